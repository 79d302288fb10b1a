getent group sentinel >/dev/null || groupadd -r sentinel
getent passwd sentinel >/dev/null || useradd -r -g sentinel -d /var/lib/sentinel -M \
    -s /sbin/nologin -c "Sentinel incident-response engine" sentinel
exit 0
