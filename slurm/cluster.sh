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
#
# Use it:  slurm/cluster.sh up /tmp/albench-slurm && export SLURM_CONF=/tmp/albench-slurm/etc/slurm.conf
#
# Ports (change them to run two clusters side by side): ALBENCH_SLURM_PORT (default 6817) is
# slurmctld's; slurmd, slurmdbd and MariaDB take the next three.
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

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2; shift 2
    local t=0
    until "$@" >/dev/null 2>&1; do
        sleep 0.5; t=$((t + 1))
        [ "$t" -lt $((limit * 2)) ] || return 1
    done
}

node_idle() { [ "$(sinfo -h -n localhost -o %t 2>/dev/null)" = "idle" ]; }

cmd_up() {
    local D=${1:?usage: cluster.sh up DIR}
    local why
    why=$(can_run) || die "$why"
    have_packages || die "Slurm packages missing: run 'slurm/cluster.sh install' first"
    mkdir -p "$D"
    D=$(cd "$D" && pwd)
    [ ! -e "$D/run/slurmctld.pid" ] || die "$D already holds a cluster; run 'slurm/cluster.sh down $D' first"
    local port=${ALBENCH_SLURM_PORT:-6817}
    local dport=$((port + 1)) dbdport=$((port + 2)) sqlport=$((port + 3))
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
        --seed-file "$D/munge/munge.seed" --log-file "$D/log/munged.log" \
        || die "munged did not start; see $D/log/munged.log"

    # MariaDB for slurmdbd (own datadir and port, no grant tables: it only listens on 127.0.0.1)
    mariadb-install-db --no-defaults --user=root --datadir="$D/mysql" --auth-root-authentication-method=normal \
        --skip-test-db >"$D/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed; see $D/log/mariadb-install.log"
    setsid -f mariadbd --no-defaults --user=root --datadir="$D/mysql" --port="$sqlport" --bind-address=127.0.0.1 \
        --socket="$D/run/mysqld.sock" --pid-file="$D/run/mariadbd.pid" --skip-grant-tables \
        --log-error="$D/log/mariadb.log" </dev/null >/dev/null 2>&1
    wait_for 60 mariadb test -S "$D/run/mysqld.sock" || die "MariaDB did not start; see $D/log/mariadb.log"

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

    slurmdbd || die "slurmdbd did not start; see $D/log/slurmdbd.log"
    wait_for 60 slurmdbd sacctmgr -n list cluster || die "slurmdbd does not answer; see $D/log/slurmdbd.log"
    slurmctld || die "slurmctld did not start; see $D/log/slurmctld.log"
    slurmd -N localhost || die "slurmd did not start; see $D/log/slurmd.log"
    wait_for 60 node node_idle || die "the node never became idle; see $D/log/slurmctld.log and $D/log/slurmd.log"
    echo "export SLURM_CONF=$SLURM_CONF"
}

stop_pid() {  # stop_pid NAME PIDFILE: TERM, wait up to 20 s, then KILL; only the process the file names
    local name=$1 file=$2 pid comm t=0
    [ -s "$file" ] || return 0
    pid=$(tr -dc 0-9 <"$file")
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || { rm -f "$file"; return 0; }
    comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
    if [ "${comm:0:15}" != "${name:0:15}" ]; then  # a stale pid file whose number now belongs to another process
        echo "slurm/cluster.sh: $file names pid $pid ($comm), not $name; leaving it alone" >&2
        rm -f "$file"; return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    while [ -d "/proc/$pid" ] && [ "$t" -lt 40 ]; do sleep 0.5; t=$((t + 1)); done
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
    local conf=$D/etc/slurm.conf name pid t=0
    if [ -s "$D/run/slurmctld.pid" ] && [ -f "$conf" ]; then
        # end the jobs first, so that slurmd reaps their steps before it goes
        SLURM_CONF=$conf timeout 20 scancel --user="$(id -un)" >/dev/null 2>&1 || true
        while [ -n "$(SLURM_CONF=$conf timeout 10 squeue -h -o %i 2>/dev/null)" ] && [ "$t" -lt 60 ]; do
            sleep 0.5; t=$((t + 1))
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

case "${1:-}" in
    install) cmd_install ;;
    up) cmd_up "${2:-}" ;;
    down) cmd_down "${2:-}" ;;
    check) why=$(can_run) || { echo "$why"; exit 1; }
           have_packages || { echo "Slurm packages missing (run 'slurm/cluster.sh install')"; exit 3; } ;;
    *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
