#!/bin/sh
# udhcpc's script in dim's initramfs (/etc/dim/udhcpc.sh): configure the interface from the
# lease and record it in /run/dim/lease for /init to read. udhcpc passes the lease in
# variables: interface, ip, mask (prefix length), router, dns, domain, hostname, serverid.

# Only what is safe inside single quotes in /run/dim/lease: no quote, no space.
safe() { printf '%s' "$1" | tr -cd 'A-Za-z0-9._:-'; }

case "$1" in
deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound | renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface" || exit 1
    if [ -n "$router" ]; then
        ip route del default 2>/dev/null
        for gateway in $router; do
            ip route add default via "$gateway" dev "$interface" && break
        done
    fi
    : >/etc/resolv.conf
    [ -n "$domain" ] && echo "search $domain" >>/etc/resolv.conf
    for server in $dns; do
        echo "nameserver $server" >>/etc/resolv.conf
    done
    mkdir -p /run/dim
    {
        echo "dim_ip='$(safe "$ip")'"
        echo "dim_mask='$(safe "$mask")'"
        echo "dim_router='$(safe "${router%% *}")'"
        echo "dim_hostname='$(safe "$hostname")'"
        echo "dim_domain='$(safe "$domain")'"
        echo "dim_dhcp_server='$(safe "$serverid")'"
    } >/run/dim/lease
    ;;
esac
exit 0
