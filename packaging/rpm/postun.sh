if [ "$1" = 0 ]; then
    rm -rf /var/lib/sentinel
    userdel sentinel >/dev/null 2>&1 || true
    groupdel sentinel >/dev/null 2>&1 || true
fi
exit 0
