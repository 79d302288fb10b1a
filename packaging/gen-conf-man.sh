#!/bin/sh
# sentinel.conf(5): the hand-written head, the reference generated from the parameter tables,
# the see-also. Usage: gen-conf-man.sh HEAD SENTINELD PLUGIN_DIR OUT.gz
set -e
head=$1 sentineld=$2 plugins=$3 out=$4
{
    cat "$head"
    "$sentineld" --describe reference -p "$plugins"
    printf '.SH "SEE ALSO"\n.BR sentineld (8),\n.BR sentinelctl (1)\n'
} | gzip -9n > "$out.tmp"
mv "$out.tmp" "$out"
