#!/bin/sh
# dim's /init: mount an image's live tree over NFS, read-only, directly as the root.
#
# Kernel arguments (see dim.boot.arguments):
#   dim.root=SERVER:PATH         the image's live tree (required)
#   dim.rw=SERVER:PATH           the folder that holds <node>/<image>, the node's replicas
#   dim.image=NAME               the image (names the replica)
#   dim.node=NAME                the node (else the host name DHCP gave)
#   dim.mac=MAC, BOOTIF=01-MAC   the NIC to use (else the first Ethernet interface)
#   dim.nfsopts=OPTS             extra NFS mount options (default actimeo=1)
#   dim.persist=/a,/b            bound from the node's replica, read-write
#   dim.volatile=/a,/b           tmpfs (/run always is)
#   dim.init=PATH                the image's init (default /sbin/init)
#   dim.server=ADDRESS           the image server, when dim.root does not say it
#   dim.shell=STEP               a shell on the console before that step (debugging)
#
# Each step prints one line on the console. When one fails, /init says which and why, and
# starts a shell on the console instead of hanging:
#   dim: step 5/9 mount root 10.77.0.1:/var/lib/dim/images/tiny/live failed: mount: ...
# That holds for the image's init too: switch_root deletes the initramfs before it execs it,
# so an init that cannot run would end pid 1 in a kernel panic. Step 9 first follows its links
# inside the image, checks it is an executable file, reads it whole (and a script's
# interpreter), and on a problem says so and starts the rescue shell:
#   dim: step 9/9 switch_root to /sbin/init failed: reading /sbin/init (/usr/lib/systemd/systemd): Input/output error
#
# Sourced with $$ != 1 (the unit tests), it only defines its functions.

DIM_STEPS=9
dim_step=0
dim_what=""
dim_nfsopts_default="actimeo=1"
dim_errors=/run/dim/errors

say() {
    echo "dim: $*"
}

step() {
    dim_step=$1
    shift
    dim_what="$*"
    dim_uptime=""
    [ -r /proc/uptime ] && read -r dim_uptime _ </proc/uptime
    say "step $dim_step/$DIM_STEPS $dim_what${dim_uptime:+ (at $dim_uptime s)}"
    [ "$dim_shell" = "$dim_step" ] && rescue "dim.shell=$dim_step asked for a shell"
}

fail() {
    say "step $dim_step/$DIM_STEPS $dim_what failed: $*"
    rescue "the boot stopped at step $dim_step"
}

# A shell on the console, again whenever it exits: pid 1 must never end.
rescue() {
    say "$1; rescue shell on the console ('exit' gives a new one, 'reboot -f' restarts)"
    export PS1='dim-rescue# '
    while :; do
        cttyhack sh -i
        say "the rescue shell exited; starting another"
        sleep 1
    done
}

# try CMD ARGS: run a command; on failure, fail with the last lines of what it said.
try() {
    dim_out=$("$@" 2>&1)
    dim_rc=$?
    [ "$dim_rc" -eq 0 ] && return 0
    fail "$(printf '%s' "$dim_out" | tail -n 3 | tr '\n' ' ')(exit status $dim_rc)"
}

# dim_parse_cmdline TEXT: set dim_* variables from the kernel arguments in TEXT.
dim_parse_cmdline() {
    dim_server="" dim_image="" dim_root="" dim_rw="" dim_node="" dim_mac="" dim_bootif=""
    dim_persist="" dim_volatile="" dim_init="/sbin/init" dim_shell=""
    dim_nfsopts="$dim_nfsopts_default"
    set -f
    for arg in $1; do
        case "$arg" in
        dim.server=*) dim_server=${arg#*=} ;;
        dim.image=*) dim_image=${arg#*=} ;;
        dim.root=*) dim_root=${arg#*=} ;;
        dim.rw=*) dim_rw=${arg#*=} ;;
        dim.node=*) dim_node=${arg#*=} ;;
        dim.mac=*) dim_mac=${arg#*=} ;;
        dim.nfsopts=*) dim_nfsopts=${arg#*=} ;;
        dim.persist=*) dim_persist=$(echo "${arg#*=}" | tr ',' ' ') ;;
        dim.volatile=*) dim_volatile=$(echo "${arg#*=}" | tr ',' ' ') ;;
        dim.init=*) dim_init=${arg#*=} ;;
        dim.shell=*) dim_shell=${arg#*=} ;;
        BOOTIF=*) dim_bootif=${arg#*=} ;;
        esac
    done
    set +f
    dim_mac=$(dim_wanted_mac "$dim_mac" "$dim_bootif")
    if [ -z "$dim_server" ]; then
        dim_server=${dim_root%%:*}
    fi
}

# dim_check_args: what the boot cannot do without, in words.
dim_check_args() {
    case "$dim_root" in
    ?*:/*) ;;
    "") echo "dim.root is missing: give dim.root=SERVER:/PATH" && return 1 ;;
    *) echo "dim.root=$dim_root is not SERVER:/PATH" && return 1 ;;
    esac
    if [ -n "$dim_persist" ]; then
        case "$dim_rw" in
        ?*:/*) ;;
        *) echo "dim.persist needs dim.rw=SERVER:/PATH (got '$dim_rw')" && return 1 ;;
        esac
        [ -n "$dim_image" ] || { echo "dim.persist needs dim.image=NAME" && return 1; }
    fi
    for path in $dim_persist $dim_volatile $dim_init; do
        case "$path" in
        /*) ;;
        *) echo "$path is not an absolute path" && return 1 ;;
        esac
    done
    return 0
}

# dim_wanted_mac MAC BOOTIF: the MAC to look for, lower case with colons, or nothing.
# pxelinux's BOOTIF is the ARP type and the MAC with dashes: 01-52-54-00-12-34-56.
dim_wanted_mac() {
    if [ -n "$1" ]; then
        echo "$1" | tr 'A-F-' 'a-f:'
    elif [ -n "$2" ]; then
        echo "${2#??-}" | tr 'A-F-' 'a-f:'
    fi
}

# dim_pick_iface MAC NETDIR: the interface with that MAC, or the first Ethernet one.
dim_pick_iface() {
    for dev in "$2"/*; do
        [ -f "$dev/address" ] || continue
        name=${dev##*/}
        [ "$name" = lo ] && continue
        if [ -n "$1" ]; then
            [ "$(cat "$dev/address")" = "$1" ] && echo "$name" && return 0
        elif [ "$(cat "$dev/type" 2>/dev/null)" = 1 ]; then
            echo "$name" && return 0
        fi
    done
    return 1
}

# dim_nfs_type OPTS: nfs4 unless the options ask for version 2 or 3.
dim_nfs_type() {
    case ",$1," in
    *,vers=2,* | *,vers=3,* | *,nfsvers=2,* | *,nfsvers=3,*) echo nfs ;;
    *) echo nfs4 ;;
    esac
}

# dim_nfs_options ro|rw SERVER CLIENT OPTS: the kernel's own text options. busybox's mount
# hands them to mount(2) as they are, and the kernel then needs the server's address (addr=)
# and, for NFSv4, the client's (clientaddr=); NFSv3 without rpc.statd needs nolock.
# NFSv4.1 unless OPTS name a version: over 4.2, kernels with CONFIG_NFS_V4_2_READ_PLUS=y (6.x,
# Debian 13's) read with READ_PLUS, which nfs-ganesha before 6.2 answers with no data (I/O
# errors, empty files). An image whose server can take it may still ask vers=4.2.
dim_nfs_options() {
    opts="addr=$2"
    case ",$4," in
    *,vers=* | *,nfsvers=*) ;;
    *) opts="$opts,vers=4.1" ;;
    esac
    case ",$4," in
    *,proto=*) ;;
    *) opts="$opts,proto=tcp" ;;
    esac
    if [ "$(dim_nfs_type "$4")" = nfs4 ]; then
        opts="$opts,clientaddr=$3"
    else
        case ",$4," in
        *,lock,* | *,nolock,*) ;;
        *) opts="$opts,nolock" ;;
        esac
    fi
    [ -n "$4" ] && opts="$opts,$4"
    echo "$opts,$1"
}

# dim_mount_nfs ro|rw SERVER:PATH WHERE: a few tries, the network may need a moment.
dim_mount_nfs() {
    dim_type=$(dim_nfs_type "$dim_nfsopts")
    dim_opts=$(dim_nfs_options "$1" "${2%%:*}" "$dim_ip" "$dim_nfsopts")
    for attempt in 1 2 3 4; do
        dim_out=$(mount -t "$dim_type" -o "$dim_opts" "$2" "$3" 2>&1) && return 0
        [ "$attempt" = 4 ] || sleep 1
    done
    fail "mount -t $dim_type -o $dim_opts: $(printf '%s' "$dim_out" | tail -n 2 | tr '\n' ' ')"
}

# dim_resolve_in ROOT PATH: PATH as a process chrooted in ROOT finds it, printed under ROOT.
# Symbolic links are followed one component at a time: an absolute target from ROOT (the
# image's /sbin/init -> /lib/systemd/systemd), a relative one from the link's folder (a
# merged-usr /sbin -> usr/sbin). More than 40 links (the kernel's limit) is a loop: it says
# so and fails. What does not exist is left as it is, for the caller to find missing.
dim_resolve_in() {
    local root="${1%/}" todo="$2" found="" part target links=0 last=""
    while :; do
        while [ "${todo#/}" != "$todo" ]; do todo=${todo#/}; done
        [ -n "$todo" ] || break
        part=${todo%%/*}
        if [ "$part" = "$todo" ]; then todo=""; else todo=${todo#*/}; fi
        case "$part" in
        .) continue ;;
        ..) found=${found%/*} && continue ;;
        esac
        if [ -L "$root$found/$part" ]; then
            links=$((links + 1))
            target=$(readlink "$root$found/$part")
            # the loop is named by its last link to a file (init -> /sbin/init), not a folder
            [ -n "$todo" ] || last="$found/$part -> $target"
            if [ "$links" -gt 40 ]; then
                echo "more than 40 symbolic links, a loop (${last:-$found/$part -> $target})"
                return 1
            fi
            case "$target" in /*) found="" ;; esac
            todo="$target${todo:+/$todo}"
        else
            found="$found/$part"
        fi
    done
    echo "$root${found:-/}"
}

# dim_check_program ROOT PATH: whether ROOT's PATH is a program the kernel can start: a
# regular executable file that reads whole (an NFS server can fail reads after lookups
# passed: nfs-ganesha < 6.2 over NFSv4.2 READ_PLUS). Prints the file under ROOT; else one line
# of why, naming PATH and, in brackets, where its links led.
dim_check_program() {
    local file shown size got err
    file=$(dim_resolve_in "$1" "$2") || { echo "$2: $file" && return 1; }
    shown=${file#"${1%/}"}
    [ "$shown" = "$2" ] || shown="$2 ($shown)"
    [ -e "$file" ] || { echo "$shown: no such file" && return 1; }
    [ ! -d "$file" ] || { echo "$shown: a folder, not a program" && return 1; }
    [ -f "$file" ] || { echo "$shown: not a regular file" && return 1; }
    [ -x "$file" ] || { echo "$shown: not executable" && return 1; }
    size=$(stat -c %s "$file")
    if ! got=$(wc -c 2>"$dim_errors" <"$file"); then
        read -r err <"$dim_errors"
        err=${err#wc: standard input: }
        echo "reading $shown: ${err:-wc -c failed}"
        return 1
    fi
    [ "$got" = "$size" ] || { echo "reading $shown: read $got of $size bytes" && return 1; }
    echo "$file"
}

# dim_elf_interp FILE: the program interpreter a 64-bit little-endian ELF file names in its
# PT_INTERP header (/lib64/ld-linux-x86-64.so.2), empty for a static one; fails for anything
# that is not such an ELF file. busybox's od reads the headers' numbers.
dim_elf_interp() {
    local phoff size count i at
    [ "$(dd if="$1" bs=1 skip=1 count=3 2>/dev/null)" = ELF ] || return 1
    [ "$(od -An -tu1 -j4 -N1 "$1" | tr -d ' ')" = 2 ] || return 1
    [ "$(od -An -tu1 -j5 -N1 "$1" | tr -d ' ')" = 1 ] || return 1
    phoff=$(od -An -tu8 -j32 -N8 "$1" | tr -d ' ')
    size=$(od -An -tu2 -j54 -N2 "$1" | tr -d ' ')
    count=$(od -An -tu2 -j56 -N2 "$1" | tr -d ' ')
    # headers that do not fit in the file: not an ELF program the kernel would run
    [ "${size:-0}" -ge 56 ] && [ "${count:-0}" -le 256 ] || return 1
    [ $((phoff + size * count)) -le "$(stat -c %s "$1")" ] || return 1
    i=0
    while [ "$i" -lt "${count:-0}" ]; do
        at=$((phoff + i * size))
        if [ "$(od -An -tu4 -j"$at" -N4 "$1" | tr -d ' ')" = 3 ]; then
            dd if="$1" bs=1 skip="$(od -An -tu8 -j$((at + 8)) -N8 "$1" | tr -d ' ')" \
                count=$(($(od -An -tu8 -j$((at + 32)) -N8 "$1" | tr -d ' ') - 1)) 2>/dev/null
            return 0
        fi
        i=$((i + 1))
    done
}

# dim_check_init ROOT PATH: whether ROOT's PATH can be the init that switch_root execs (see
# dim_check_program), and for a script, its interpreter too. Else one line of why.
dim_check_init() {
    local file shown line
    file=$(dim_check_program "$1" "$2") || { echo "$file" && return 1; }
    shown=${file#"${1%/}"}
    [ "$shown" = "$2" ] || shown="$2 ($shown)"
    if [ "$(head -c 2 "$file")" != "#!" ]; then
        # a dynamic ELF program needs its interpreter (ld.so) too, before its first instruction
        line=$(dim_elf_interp "$file") || return 0
        [ -n "$line" ] || return 0
        line=$(dim_check_program "$1" "$line") || {
            echo "$shown: its ELF interpreter: $line" && return 1
        }
        return 0
    fi
    read -r line <"$file"
    set -f
    set -- "$1" "$2" ${line#??}
    set +f
    [ -n "$3" ] || { echo "$shown: a script (#!) that names no interpreter" && return 1; }
    line=$(dim_check_program "$1" "$3") || { echo "$shown: #!$3: $line" && return 1; }
}

# dim_writable_paths: "persist PATH" and "volatile PATH" lines, parents before children, so
# that a volatile /var/tmp lands on a persistent /var and not under it.
dim_writable_paths() {
    {
        for path in $dim_persist; do echo "${path%/} persist"; done
        for path in $dim_volatile; do
            [ "${path%/}" = /run ] || echo "${path%/} volatile"
        done
    } | LC_ALL=C sort -u
}

# dim_load_modules LIST FOLDER SYS: insmod the modules of LIST ("required|optional PATH" lines,
# in load order) from FOLDER. Once the boot NIC is there, the optional modules left (drivers
# for NICs this node does not have, the writable layers /init does not use) are not loaded:
# under TCG mlx5_core alone takes a second and ext4 half of one. No subshell per module: a
# fork costs milliseconds there too.
dim_load_modules() {
    count=0 skipped=0 nic=""
    while read -r need path; do
        name=${path##*/}
        name=${name%.ko}
        name=${name//-/_}
        [ -d "$3/module/$name" ] && continue
        if [ "$need" != required ] && [ -n "$nic" ]; then
            skipped=$((skipped + 1))
            continue
        fi
        if insmod "$2/$path" 2>"$dim_errors"; then
            count=$((count + 1))
            if [ "$need" != required ] && dim_nic_present "$3/class/net"; then
                nic=yes
            fi
        elif [ "$need" = required ]; then
            fail "insmod $name: $(cat "$dim_errors")"
        else
            say "  warning: module $name not loaded: $(cat "$dim_errors")"
        fi
    done <"$1"
    if [ "$skipped" -gt 0 ]; then
        say "  $count modules loaded, $skipped optional ones left out (the boot NIC is there)"
    else
        say "  $count modules loaded"
    fi
}

# dim_nic_present NETDIR: whether the boot NIC (dim_mac's, else an Ethernet one) is in NETDIR.
# Cheap while only lo is there.
dim_nic_present() {
    netdir=$1
    set -- "$netdir"/*
    [ $# -gt 1 ] || return 1
    dim_pick_iface "$dim_mac" "$netdir" >/dev/null
}

dim_network() {
    tries=0
    until dim_iface=$(dim_pick_iface "$dim_mac" /sys/class/net); do
        tries=$((tries + 1))
        if [ $tries -ge 100 ]; then
            found=$(ls /sys/class/net | tr '\n' ' ')
            fail "no interface ${dim_mac:+with MAC $dim_mac }after 10 s (have: $found)"
        fi
        usleep 100000
    done
    mac=$(cat "/sys/class/net/$dim_iface/address")
    ip link set "$dim_iface" up
    say "  $dim_iface ($mac): asking DHCP"
    dim_out=$(udhcpc -i "$dim_iface" -s /etc/dim/udhcpc.sh -f -q -n -C -t 8 -T 2 \
        -O hostname -O domain 2>&1)
    [ -f /run/dim/lease ] || fail "no DHCP lease on $dim_iface ($mac): $(printf '%s' "$dim_out" | tail -n 2 | tr '\n' ' ')"
    . /run/dim/lease
    say "  $dim_iface: $dim_ip/$dim_mask${dim_hostname:+, host name $dim_hostname}"
}

main() {
    export PATH=/sbin:/bin:/usr/sbin:/usr/bin
    dim_shell=""
    step 1 "mount /proc /sys /dev"
    try mount -t proc -o nosuid,nodev,noexec proc /proc
    try mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
    try mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev
    mkdir -p /run/dim

    step 2 "kernel arguments"
    dim_parse_cmdline "$(cat /proc/cmdline)"
    problem=$(dim_check_args) || fail "$problem"
    say "  root $dim_root${dim_image:+, image $dim_image}${dim_mac:+, MAC $dim_mac}"

    step 3 "load modules"
    read -r dim_kernel </etc/dim/kernel
    dim_load_modules /etc/dim/modules "/lib/modules/$dim_kernel" /sys

    step 4 "network"
    dim_network
    [ -n "$dim_node" ] || dim_node=${dim_hostname%%.*}
    [ -n "$dim_node" ] && hostname "$dim_node"

    step 5 "mount root $dim_root"
    dim_mount_nfs ro "$dim_root" /newroot

    step 6 "tmpfs on /run"
    [ -d /newroot/run ] || fail "the image has no /run to mount on"
    try mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /newroot/run
    mkdir -p /newroot/run/dim

    if [ -n "$dim_persist" ]; then
        [ -n "$dim_node" ] || { step 7 "mount read-write"; fail "no node name: neither dim.node= nor a host name from DHCP"; }
        dim_replica="$dim_rw/$dim_node/$dim_image"
        step 7 "mount read-write $dim_replica"
        mkdir -p /newroot/run/dim/rw
        dim_mount_nfs rw "$dim_replica" /newroot/run/dim/rw
    else
        step 7 "mount read-write: no persistent paths, nothing to mount"
    fi

    step 8 "persistent and volatile paths"
    dim_writable_paths >/run/dim/paths
    while read -r path kind; do
        [ -d "/newroot$path" ] || [ -f "/newroot$path" ] || fail "$path: no such path in the image to mount on"
        if [ "$kind" = persist ]; then
            [ -e "/newroot/run/dim/rw$path" ] || fail "$path: not in the node's replica $dim_replica"
            try mount -o bind "/newroot/run/dim/rw$path" "/newroot$path"
        else
            mode=$(stat -c %a "/newroot$path")
            owner=$(stat -c uid=%u,gid=%g "/newroot$path")
            try mount -t tmpfs -o "nosuid,nodev,mode=$mode,$owner" tmpfs "/newroot$path"
        fi
        say "  $path: $kind"
    done </run/dim/paths

    step 9 "switch_root to $dim_init"
    problem=$(dim_check_init /newroot "$dim_init") || fail "$problem"
    cp /run/dim/lease /newroot/run/dim/lease 2>/dev/null
    for fs in dev proc sys; do
        if [ -d "/newroot/$fs" ]; then
            mount --move "/$fs" "/newroot/$fs" || fail "mount --move /$fs"
        else
            umount -l "/$fs"
        fi
    done
    exec switch_root /newroot "$dim_init"
    # switch_root only returns when it cannot run at all: /dev is gone by now
    fail "switch_root /newroot $dim_init"
}

if [ "$$" = 1 ]; then
    exec </dev/console >/dev/console 2>&1
    main "$@"
fi
