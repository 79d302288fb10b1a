install -d -o sentinel -g sentinel -m 0750 /var/lib/sentinel
chown root:sentinel /etc/sentinel/sentinel.conf
chmod 0640 /etc/sentinel/sentinel.conf
exit 0
