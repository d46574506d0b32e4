#!/usr/bin/env bash
# A throw-away single-node Slurm cluster from Debian's packages, for CI and for trying albench's
# Slurm executor on one machine. Runs as root; every file (config, state, logs, sockets, pid files,
# database) lives under one folder, and teardown stops the daemons by their pid files only.
#
#   slurm/cluster.sh install      apt-get the packages (slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
#   slurm/cluster.sh up DIR       write the configs under DIR, start munged, mariadbd, slurmdbd, slurmctld,
#                                 slurmd; wait until the node is idle; print 'export SLURM_CONF=...'
#   slurm/cluster.sh down DIR     cancel the jobs, stop those daemons by pid file (TERM, then KILL after a
#                                 grace period), then any job step of this cluster that outlived slurmd
#   slurm/cluster.sh check        exit 0 if this machine can run the daemons now, 3 if only the packages
#                                 are missing, 1 if it cannot (not root, not Debian), saying why
#   slurm/cluster.sh ports        print the four ports 'up' would use now (no root needed)
#
# Use it:  slurm/cluster.sh up /tmp/albench-slurm && export SLURM_CONF=/tmp/albench-slurm/etc/slurm.conf
#
# DIR: 'up' takes a folder that does not exist or is empty, or one a previous 'up' made and 'down'
# stopped: then it starts afresh (new munge key and configs; the old job state, logs and accounting
# database are deleted, so job ids restart at 1). It refuses a folder whose daemons still run (run
# 'down' first) and any other non-empty folder, touching nothing in either.
#
# Ports: four in a row, slurmctld's first, then slurmd's, slurmdbd's and MariaDB's. With
# ALBENCH_SLURM_PORT set, exactly those (refused if one is taken); otherwise the first free block from
# 6817 up, so two clusters on one machine do not collide ('up' holds a lock while it picks and binds).
#
# Waits are bounded by time (ALBENCH_SLURM_WAIT_S, default 60 s each), every probe by 'timeout'.
set -euo pipefail

PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged)   # teardown order

die() { echo "slurm/cluster.sh: $*" >&2; exit 1; }

can_run() {
    [ "$(id -u)" -eq 0 ] || { echo "not root (the Slurm daemons and apt-get need root)"; return 1; }
    grep -qi '^ID=debian' /etc/os-release 2>/dev/null || { echo "not Debian (this script uses Debian's Slurm packages)"; return 1; }
    return 0
}

have_packages() {
    local b
    for b in slurmctld slurmd slurmdbd munged mariadbd mariadb-install-db sbatch sacct; do
        command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || return 1
    done
}

cmd_install() {
    local why
    why=$(can_run) || die "$why"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >/dev/null
    # apt enables systemd units; nothing starts them on a machine without systemd, and we never do.
}

WAIT_S=${ALBENCH_SLURM_WAIT_S:-60}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: until COMMAND succeeds, for SECONDS of wall time
    # (plus one probe: COMMAND must bound itself, e.g. with 'timeout 10')
    local limit=$1 what=$2; shift 2
    local deadline=$(( $(date +%s) + limit ))
    while true; do
        [ "$(date +%s)" -lt "$deadline" ] || { echo "slurm/cluster.sh: gave up waiting for $what after ${limit} s" >&2; return 1; }
        # every probe below is cut by 'timeout' itself: a hung client cannot stretch the wait
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
}

node_idle() { [ "$(timeout 10 sinfo -h -n localhost -o %t 2>/dev/null)" = "idle" ]; }

mariadb_ready() {  # mariadb_ready SOCKET: the server answers a query (its socket file appears earlier)
    timeout 10 mariadb --no-defaults --socket="$1" -u root -N -e 'SELECT 1' 2>/dev/null | grep -qx 1
}

port_free() {  # port_free PORT: nothing on this machine has a TCP socket on PORT
    if command -v ss >/dev/null 2>&1; then
        [ -z "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]
    else
        ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}

pick_ports() {  # print four free ports in a row: ALBENCH_SLURM_PORT.. exactly, or the first free block from 6817
    local base p ok
    if [ -n "${ALBENCH_SLURM_PORT:-}" ]; then
        [[ "$ALBENCH_SLURM_PORT" =~ ^[0-9]+$ ]] && [ "$ALBENCH_SLURM_PORT" -ge 1024 ] && [ "$ALBENCH_SLURM_PORT" -le 65532 ] \
            || die "ALBENCH_SLURM_PORT=$ALBENCH_SLURM_PORT is not a port number in 1024..65532"
        for p in $(seq "$ALBENCH_SLURM_PORT" $((ALBENCH_SLURM_PORT + 3))); do
            port_free "$p" || die "port $p (ALBENCH_SLURM_PORT=$ALBENCH_SLURM_PORT + $((p - ALBENCH_SLURM_PORT))) is taken; unset ALBENCH_SLURM_PORT to pick free ports, or choose another"
        done
        echo "$ALBENCH_SLURM_PORT $((ALBENCH_SLURM_PORT + 1)) $((ALBENCH_SLURM_PORT + 2)) $((ALBENCH_SLURM_PORT + 3))"
        return 0
    fi
    for base in $(seq 6817 4 7813); do
        ok=1
        for p in $(seq "$base" $((base + 3))); do port_free "$p" || { ok=0; break; }; done
        if [ "$ok" -eq 1 ]; then echo "$base $((base + 1)) $((base + 2)) $((base + 3))"; return 0; fi
    done
    die "no four free ports in a row between 6817 and 7816; set ALBENCH_SLURM_PORT to a free block"
}

daemons_alive() {  # daemons_alive DIR: a pid file under DIR/run names a live process of that daemon
    local name pid
    for name in "${DAEMONS[@]}"; do
        [ -s "$1/run/$name.pid" ] || continue
        pid=$(tr -dc 0-9 <"$1/run/$name.pid")
        [ -n "$pid" ] && [ -d "/proc/$pid" ] && [ "$(cut -c1-15 "/proc/$pid/comm" 2>/dev/null)" = "${name:0:15}" ] && return 0
    done
    return 1
}

prepare_dir() {  # prepare_dir DIR: see "DIR:" in the header
    local D=$1
    [ -e "$D" ] || return 0
    [ -d "$D" ] || die "$D is not a folder"
    [ -n "$(ls -A "$D")" ] || return 0
    [ -f "$D/etc/slurm.conf" ] && grep -qx 'ClusterName=albench' "$D/etc/slurm.conf" \
        || die "$D is not empty and holds no cluster of this script; give an empty or new folder"
    ! daemons_alive "$D" || die "$D holds a running cluster; run 'slurm/cluster.sh down $D' first"
    # a stopped cluster of ours: start afresh (only the folders this script makes)
    rm -rf "${D:?}"/{etc,state,run,log,munge,mysql}
}

cmd_up() {
    local D=${1:?usage: cluster.sh up DIR}
    local why
    prepare_dir "$D"
    why=$(can_run) || die "$why"
    have_packages || die "Slurm packages missing: run 'slurm/cluster.sh install' first"
    mkdir -p "$D"
    D=$(cd "$D" && pwd)
    # one 'up' at a time on this machine picks ports and starts daemons, so two never pick the same
    # (the daemons are started with fd 9 closed: none of them may hold the lock after 'up' ends)
    exec 9>/tmp/albench-slurm-cluster.lock
    flock -w "$WAIT_S" 9 || die "another 'slurm/cluster.sh up' held /tmp/albench-slurm-cluster.lock for $WAIT_S s"
    local port dport dbdport sqlport
    read -r port dport dbdport sqlport <<<"$(pick_ports)"
    [ -n "$sqlport" ] || exit 1
    mkdir -p "$D"/{etc,state/ctld,state/d,run,log,munge,mysql}
    chmod 755 "$D" "$D/munge"  # munged insists that everyone may traverse to its socket
    local p=$D
    while [ "$p" != / ]; do
        p=$(dirname "$p")
        [ "$(( 0$(stat -c %a "$p") & 01 ))" -ne 0 ] || die "munged needs $p to be traversable by everyone (chmod o+x), or use another DIR"
    done
    local sock=$D/munge/munge.socket
    local cpus mem
    cpus=$(nproc)
    mem=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 - 256 ))

    # munge: a fresh key per cluster
    dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$D/munge/munge.key"
    munged --key-file "$D/munge/munge.key" --socket "$sock" --pid-file "$D/run/munged.pid" \
        --seed-file "$D/munge/munge.seed" --log-file "$D/log/munged.log" 9>&- \
        || die "munged did not start; see $D/log/munged.log"

    # MariaDB for slurmdbd (own datadir and port, no grant tables: it only listens on 127.0.0.1)
    mariadb-install-db --no-defaults --user=root --datadir="$D/mysql" --auth-root-authentication-method=normal \
        --skip-test-db >"$D/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed; see $D/log/mariadb-install.log"
    setsid -f mariadbd --no-defaults --user=root --datadir="$D/mysql" --port="$sqlport" --bind-address=127.0.0.1 \
        --socket="$D/run/mysqld.sock" --pid-file="$D/run/mariadbd.pid" --skip-grant-tables \
        --log-error="$D/log/mariadb.log" </dev/null >/dev/null 2>&1 9>&-
    wait_for "$WAIT_S" MariaDB mariadb_ready "$D/run/mysqld.sock" || die "MariaDB does not answer; see $D/log/mariadb.log"

    cat >"$D/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$sock
DbdHost=localhost
DbdPort=$dbdport
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$sqlport
StorageUser=root
StorageLoc=albench_slurm_acct
PidFile=$D/run/slurmdbd.pid
LogFile=$D/log/slurmdbd.log
EOF
    chmod 600 "$D/etc/slurmdbd.conf"

    # EnforcePartLimits=ALL: an impossible request is rejected by sbatch instead of pending forever.
    # cred_expire=10: a requeued job would otherwise wait 120 s before it can start again.
    cat >"$D/etc/slurm.conf" <<EOF
ClusterName=albench
SlurmctldHost=localhost
SlurmctldPort=$port
SlurmdPort=$dport
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock,cred_expire=10
StateSaveLocation=$D/state/ctld
SlurmdSpoolDir=$D/state/d
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=1024
EnforcePartLimits=ALL
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=2
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$dbdport
AccountingStoragePass=$sock
MpiDefault=none
ReturnToService=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF=$D/etc/slurm.conf

    slurmdbd 9>&- || die "slurmdbd did not start; see $D/log/slurmdbd.log"
    wait_for "$WAIT_S" slurmdbd timeout 10 sacctmgr -n list cluster || die "slurmdbd does not answer; see $D/log/slurmdbd.log"
    slurmctld 9>&- || die "slurmctld did not start; see $D/log/slurmctld.log"
    slurmd -N localhost 9>&- || die "slurmd did not start; see $D/log/slurmd.log"
    wait_for "$WAIT_S" "the node to be idle" node_idle || die "the node never became idle; see $D/log/slurmctld.log and $D/log/slurmd.log"
    echo "slurm/cluster.sh: ports slurmctld $port, slurmd $dport, slurmdbd $dbdport, MariaDB $sqlport" >&2
    echo "export SLURM_CONF=$SLURM_CONF"
}

stop_pid() {  # stop_pid NAME PIDFILE: TERM, wait up to 20 s, then KILL; only the process the file names
    local name=$1 file=$2 pid comm
    [ -s "$file" ] || return 0
    pid=$(tr -dc 0-9 <"$file")
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || { rm -f "$file"; return 0; }
    comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
    if [ "${comm:0:15}" != "${name:0:15}" ]; then  # a stale pid file whose number now belongs to another process
        echo "slurm/cluster.sh: $file names pid $pid ($comm), not $name; leaving it alone" >&2
        rm -f "$file"; return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$(( $(date +%s) + 20 ))
    while [ -d "/proc/$pid" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.5; done
    if [ -d "/proc/$pid" ]; then
        echo "slurm/cluster.sh: $name (pid $pid) ignored TERM for 20 s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

cluster_strays() {  # pids of this cluster's job steps: slurmstepd and job processes outlive slurmd
    local conf=$1 p env
    for p in /proc/[0-9]*; do
        env=$(tr '\0' '\n' 2>/dev/null <"$p/environ") || continue
        grep -qxF "SLURM_CONF=$conf" <<<"$env" || continue
        # the shell running this script (and pytest) carry SLURM_CONF too; only steps and jobs go
        if [ "$(cat "$p/comm" 2>/dev/null)" = slurmstepd ] || grep -q '^SLURM_JOB_ID=' <<<"$env"; then
            echo "${p#/proc/}"
        fi
    done
}

cmd_down() {
    local D=${1:?usage: cluster.sh down DIR}
    [ -d "$D/run" ] || return 0
    D=$(cd "$D" && pwd)
    local conf=$D/etc/slurm.conf name pid deadline
    if [ -s "$D/run/slurmctld.pid" ] && [ -f "$conf" ]; then
        # end the jobs first, so that slurmd reaps their steps before it goes (30 s at most)
        SLURM_CONF=$conf timeout 20 scancel --user="$(id -un)" >/dev/null 2>&1 || true
        deadline=$(( $(date +%s) + 30 ))
        while [ "$(date +%s)" -lt "$deadline" ] \
              && [ -n "$(SLURM_CONF=$conf timeout 5 squeue -h -o %i 2>/dev/null)" ]; do
            sleep 0.5
        done
    fi
    for name in "${DAEMONS[@]}"; do
        stop_pid "$name" "$D/run/$name.pid"
    done
    for pid in $(cluster_strays "$conf"); do
        echo "slurm/cluster.sh: stopping $(cat "/proc/$pid/comm" 2>/dev/null) (pid $pid), left over by this cluster's slurmd" >&2
        kill -TERM "$pid" 2>/dev/null || true
    done
    sleep 1
    for pid in $(cluster_strays "$conf"); do
        kill -KILL "$pid" 2>/dev/null || true
    done
}

# sourced (tests call the functions above): define them only
[ "${BASH_SOURCE[0]}" = "$0" ] || return 0

case "${1:-}" in
    install) cmd_install ;;
    up) cmd_up "${2:-}" ;;
    down) cmd_down "${2:-}" ;;
    ports) pick_ports ;;
    check) why=$(can_run) || { echo "$why"; exit 1; }
           have_packages || { echo "Slurm packages missing (run 'slurm/cluster.sh install')"; exit 3; } ;;
    *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2 ;;
esac
