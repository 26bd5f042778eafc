#!/usr/bin/env bash
# Writes the bash completion of PROGRAM to stdout: every option that `BINARY --help` prints,
# plus the values of the options that take a known set (interfaces, files, schedulers).
# Generated at package time (scripts/build-deb.sh), so it follows the help text.
#
#   packaging/deb/completion.sh rvsd target/release/rvsd > rvsd.bash
set -euo pipefail
name="$1" bin="$2"
# Options: a dash-word after a blank, comma, bar or bracket ("-A|E" gives -A, "[-s" gives -s).
opts="$("$bin" --help 2>&1 | grep -oE '(^|[][[:space:],|{])--?[A-Za-z][A-Za-z0-9-]*' |
    sed -E 's/^[][[:space:],|{]//' | sort -u | tr '\n' ' ')"
[ -n "$opts" ] || { echo "completion.sh: no option found in '$bin --help'" >&2; exit 1; }
fn="_rvs_$(tr -c 'A-Za-z0-9\n' _ <<<"$name")"
case "$name" in
    rvsd)
        values='-i|--interface) _rvs_ifaces ;;
        --config|--keepalived) COMPREPLY=($(compgen -f -- "$cur")) ;;
        --socket) COMPREPLY=($(compgen -f -- "$cur")) ;;
        --log) COMPREPLY=($(compgen -W "error warn info debug trace" -- "$cur")) ;;
        --metrics|--api-listen|--api-token|--workers|--max-conns) ;;' ;;
    rvsadm)
        values='-s|--scheduler) COMPREPLY=($(compgen -W "rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh twos" -- "$cur")) ;;
        --tun-type) COMPREPLY=($(compgen -W "ipip gue gre" -- "$cur")) ;;
        --pe) COMPREPLY=($(compgen -W "sip" -- "$cur")) ;;
        --start-daemon|--stop-daemon) COMPREPLY=($(compgen -W "master backup" -- "$cur")) ;;
        --mcast-interface) _rvs_ifaces ;;
        --socket) COMPREPLY=($(compgen -f -- "$cur")) ;;
        -t|--tcp-service|-u|--udp-service|--sctp-service|-f|--fwmark-service|-r|--real-server|-w|--weight|-x|--u-threshold|-y|--l-threshold|-M|--netmask|-b|--sched-flags|--tun-port|--syncid|--sync-maxlen|--mcast-group|--mcast-port|--mcast-ttl) ;;' ;;
    rvs-decap)
        values='-i|--interface) _rvs_ifaces ;;
        --tun|--gue-port|--interval) ;;' ;;
    *) values='' ;;
esac
cat <<COMPLETION
# bash completion for $name, generated from '$name --help' by packaging/deb/completion.sh.
_rvs_ifaces() {
    local ifs
    ifs="\$(ls /sys/class/net 2>/dev/null)"
    COMPREPLY=(\$(compgen -W "\$ifs" -- "\$cur"))
}
$fn() {
    local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}"
    COMPREPLY=()
    case "\$prev" in
        $values
        *) COMPREPLY=(\$(compgen -W "$opts" -- "\$cur")) ;;
    esac
}
complete -F $fn $name
COMPLETION
