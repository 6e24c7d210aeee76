#!/usr/bin/env bash
# A real one-node SLURM cluster, a gradexp sweep through hydra/launcher=slurm, and a job that is
# killed mid-run. Run as root from anywhere:  .ci/slurm.sh [VENV]   (VENV: a venv with gradexp and
# its `sweeps` extra; default .venv). Follows ../shared/notes/slurm-single-node.md:
#  - Debian's munge, slurmctld, slurmd, slurmdbd and MariaDB (accounting: without sacct, submitit
#    cannot tell that a job died without a result, and the sweep hangs forever);
#  - everything runs inside a loopback-only network namespace (unshare -n; not `ip netns exec`,
#    which remounts /sys and breaks slurmd's cgroup set-up), with 127.0.0.2 added to lo so glibc
#    resolves 127.0.0.1 (AI_ADDRCONFIG), and every daemon bound to 127.0.0.1;
#  - all state under one temporary dir; a trap stops every daemon this script started.
# It checks: each job ran as a SLURM array task (sacct) and left summary.json; a job cancelled
# while running makes the sweep end with a clear error (not hang); a vectorised sweep runs one
# array task per group; nothing is left running.
# GRADEXP_SLURM_BENCH=1 also times benchmarks/sweep_overhead.py's 24-job sweep on the cluster.
set -euo pipefail

inner() {
    local W=$1 PY=$2 ROOT=$3
    pids=()  # global: the EXIT trap runs after this function has returned
    cleanup() {
        local rc=$?
        set +eu
        if command -v scancel >/dev/null && [ -n "${SLURM_CONF:-}" ]; then
            scancel --user=root 2>/dev/null
            for _ in $(seq 50); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
        fi
        for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null; done
        for _ in $(seq 50); do
            alive=0
            for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
            [ $alive = 0 ] && break
            sleep 0.2
        done
        for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done  # slurmd may ignore SIGTERM
        # Whatever else runs in this namespace was started here (slurmstepd, job processes).
        local me ns
        me=$(readlink /proc/$$/ns/net)
        for d in /proc/[0-9]*; do
            p=${d#/proc/}
            [ "$p" = $$ ] && continue
            ns=$(readlink "$d/ns/net" 2>/dev/null) || continue
            [ "$ns" = "$me" ] && kill -9 "$p" 2>/dev/null
        done
        echo "slurm: daemons stopped"
        exit $rc
    }
    trap cleanup EXIT

    ip link set lo up
    ip addr add 127.0.0.2/8 dev lo  # glibc's AI_ADDRCONFIG ignores 127.0.0.1 alone
    mkdir -p "$W"/{etc,state,spool,run,log,mysql,work}
    export SLURM_CONF=$W/etc/slurm.conf
    local mem
    mem=$(free -m | awk '/^Mem:/ {print int($2 * 0.8)}')
    cat >"$SLURM_CONF" <<EOF
ClusterName=gradexp
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MailProg=/bin/true
StateSaveLocation=$W/state
SlurmdSpoolDir=$W/spool
SlurmctldPidFile=$W/run/slurmctld.pid
SlurmdPidFile=$W/run/slurmd.pid
SlurmctldLogFile=$W/log/slurmctld.log
SlurmdLogFile=$W/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
ReturnToService=2
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$W/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
CommunicationParameters=NoInAddrAny
SlurmUser=root
LogFile=$W/log/slurmdbd.log
PidFile=$W/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$W/etc/slurmdbd.conf"

    # munged on its default socket: slurmctld's link to slurmdbd ignores AuthInfo=socket=.
    mkdir -p /run/munge
    chown munge:munge /run/munge "$W/run"
    setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F \
        --pid-file="$W/run/munged.pid" --seed-file="$W/run/munged.seed" >"$W/log/munged.out" 2>&1 &
    pids+=($!)
    mariadb-install-db --no-defaults --user=root --datadir="$W/mysql" \
        --auth-root-authentication-method=socket --skip-test-db >"$W/log/mariadb-install.log" 2>&1
    mariadbd --no-defaults --user=root --datadir="$W/mysql" --skip-networking \
        --socket="$W/run/mysqld.sock" --pid-file="$W/run/mysqld.pid" \
        --log-error="$W/log/mariadb.err" >"$W/log/mariadbd.out" 2>&1 &
    pids+=($!)
    wait_for "MariaDB socket" test -S "$W/run/mysqld.sock"
    wait_for "munge socket" test -S /run/munge/munge.socket.2
    # slurmdbd reads slurmdbd.conf beside $SLURM_CONF; daemons' own logs are in $W/log.
    MYSQL_UNIX_PORT=$W/run/mysqld.sock slurmdbd -D >"$W/log/slurmdbd.out" 2>&1 &
    pids+=($!)
    wait_for "slurmdbd on 127.0.0.1:6819" bash -c 'ss -ltn | grep -q "127.0.0.1:6819"'
    slurmctld -D -i >"$W/log/slurmctld.out" 2>&1 &
    pids+=($!)
    slurmd -D -N localhost >"$W/log/slurmd.out" 2>&1 &  # NodeName=localhost, whatever the hostname
    pids+=($!)
    wait_for "node idle" bash -c '[ "$(sinfo -h -N -o %t)" = idle ]'
    echo "slurm: cluster up in ${SECONDS}s; listening: $(ss -ltnH | awk '{print $4}' | xargs)"

    cd "$W/work"  # sweep dirs and submitit files land here
    local slurm=(hydra/launcher=slurm hydra.launcher.partition=debug hydra.launcher.timeout_min=10
        hydra.launcher.cpus_per_task=1 hydra.launcher.mem_gb=1 progress=false)

    # 1. A sweep that succeeds: 4 jobs, each a SLURM array task, each leaves summary.json.
    local t0=$SECONDS
    timeout 600 "$PY" -m gradexp -m "${slurm[@]}" optimizer=sgd,adam seed=0,1 epochs=1 \
        batch=minibatch hydra.sweep.dir="$W/work/ok" >"$W/log/sweep-ok.log" 2>&1 ||
        fail "the 4-job sweep failed" "$W/log/sweep-ok.log"
    echo "slurm: 4-job sweep took $((SECONDS - t0))s"
    check_jobs "$W/work/ok" 4 "COMPLETED COMPLETED COMPLETED COMPLETED"
    "$PY" -m gradexp.report "$W/work/ok" --no-figures >"$W/log/report.log" 2>&1 ||
        fail "gradexp.report failed on the SLURM sweep" "$W/log/report.log"
    grep -q "4 runs in 2 configurations" "$W/log/report.log" ||
        fail "report did not aggregate 4 runs into 2 configurations" "$W/log/report.log"

    # 2. A job cancelled while it runs (scancel: SIGTERM, then SIGKILL after KillWait). The job
    #    leaves no result for submitit, like a node failure; gradexp's SIGTERM handler still
    #    flushes its logs, checkpoints and records status "interrupted". The sweep must stop with
    #    an error naming the job, not wait forever; the other job's results must be there.
    t0=$SECONDS
    # lr 0.01: stochastic SGD at the default 0.1 diverges on digits (diverge.factor) within the epoch
    timeout 600 "$PY" -m gradexp -m "${slurm[@]}" optimizer=sgd optimizer.lr=0.01 batch=stochastic epochs=1,500 \
        hydra.sweep.dir="$W/work/crash" >"$W/log/sweep-crash.log" 2>&1 &
    local sweep=$!
    local job=""
    for _ in $(seq 600); do  # until array task 1 (epochs=500, minutes long) is running
        job=$(squeue -h -o "%i %T" | awk '$1 ~ /_1$/ && $2 == "RUNNING" {print $1}')
        [ -n "$job" ] && break
        sleep 0.2
    done
    [ -n "$job" ] || fail "array task 1 never started" "$W/log/sweep-crash.log"
    # Cancel once gradexp runs (its metrics.jsonl exists: the SIGTERM handler is installed); a
    # fixed sleep raced with start-up under load, when the job still died while importing torch.
    for _ in $(seq 600); do
        compgen -G "$W/work/crash/1_*/metrics.jsonl" >/dev/null && break
        sleep 0.2
    done
    compgen -G "$W/work/crash/1_*/metrics.jsonl" >/dev/null ||
        fail "array task 1 never started training" "$W/log/sweep-crash.log"
    sleep 1
    scancel "$job"
    local rc=0
    wait $sweep || rc=$?
    echo "slurm: sweep with a killed job ended (exit $rc) $((SECONDS - t0))s after it started"
    [ $rc != 0 ] && [ $rc != 124 ] || fail "expected a failing exit status, got $rc" "$W/log/sweep-crash.log"
    grep -q "has not produced any output (state: CANCELLED" "$W/log/sweep-crash.log" ||
        fail "no clear error about the killed job" "$W/log/sweep-crash.log"
    check_jobs "$W/work/crash" 2 "COMPLETED CANCELLED"
    grep -q '"status": "interrupted"' "$W/work/crash/1_"*/summary.json ||
        fail "the cancelled job did not record that it was interrupted" /dev/null
    ls "$W/work/crash/1_"*/checkpoints/step-*.pt >/dev/null ||
        fail "the cancelled job left no checkpoint to resume from" /dev/null
    # 3. A vectorised sweep on SLURM: 8 jobs in 2 groups (sgd, adam), each group one array task
    #    that trains its 4 members as one model; every job gets its own files.
    t0=$SECONDS
    timeout 600 "$PY" -m gradexp -m hydra/launcher=vectorized_slurm \
        hydra.launcher.submitit.partition=debug hydra.launcher.submitit.timeout_min=10 \
        hydra.launcher.submitit.cpus_per_task=1 hydra.launcher.submitit.mem_gb=1 progress=false \
        optimizer=sgd,adam optimizer.lr=0.01,0.02 seed=0,1 epochs=1 batch=minibatch \
        hydra.sweep.dir="$W/work/vec" >"$W/log/sweep-vec.log" 2>&1 ||
        fail "the vectorised sweep failed" "$W/log/sweep-vec.log"
    echo "slurm: vectorised 8-job sweep took $((SECONDS - t0))s"
    check_jobs "$W/work/vec" 8 "COMPLETED COMPLETED"
    [ "$(grep -l '"members": 4' "$W/work/vec"/*/summary.json | wc -l)" = 8 ] ||
        fail "the vectorised jobs were not trained 4 to a group" "$W/log/sweep-vec.log"
    grep -q "2 groups submitted as slurm tasks" "$W/log/sweep-vec.log" ||
        fail "the vectorised sweep did not submit its 2 groups" "$W/log/sweep-vec.log"
    echo "slurm: all checks passed in ${SECONDS}s"
    if [ -n "${GRADEXP_SLURM_BENCH:-}" ]; then  # the README's 24-job sweep, on this cluster
        "$PY" "$ROOT/benchmarks/sweep_overhead.py" --launcher slurm --repeats 1 \
            hydra.launcher.partition=debug hydra.launcher.cpus_per_task=1 hydra.launcher.mem_gb=1
    fi
}

# Check sacct's states for the sweep's array tasks (in order) and count the summaries.
check_jobs() {
    local dir=$1 summaries=$2 want=$3 got n id
    id=$(job_id "$dir")
    for _ in $(seq 150); do  # submitit may collect a result before the job's step has ended
        got=$(sacct -a -X -n -P -o JobID,JobName,State | sort -t_ -k2 -n |
            awk -F'|' -v id="$id" '$1 ~ "^"id"_" && $2 == "gradexp" {sub(/ by .*/, "", $3); print $3}' |
            xargs)
        # done once no task is running and every task's record has reached slurmdbd (it gets
        # them asynchronously: a task finished a moment ago can be missing from sacct)
        if ! [[ "$got" =~ RUNNING|PENDING|COMPLETING ]] && [ "$(wc -w <<<"$got")" -ge "$(wc -w <<<"$want")" ]; then
            break
        fi
        sleep 0.2
    done
    [ "$got" = "$want" ] || fail "sacct states for $dir: '$got', expected '$want'" /dev/null
    n=$(find "$dir" -name summary.json | wc -l)
    [ "$n" = "$summaries" ] || fail "$n summary.json files in $dir, expected $summaries" /dev/null
    echo "slurm: $dir: sacct $got; $n summaries"
}

job_id() {  # the array job's id, from submitit's folder names (<jobid>_<task>)
    find "$1/.submitit" -mindepth 1 -maxdepth 1 -type d -name '[0-9]*_[0-9]*' -printf '%f\n' |
        head -1 | cut -d_ -f1
}

wait_for() {
    local what=$1
    shift
    for _ in $(seq 300); do "$@" 2>/dev/null && return 0; sleep 0.2; done
    fail "timed out waiting for $what" /dev/null
}

fail() {
    echo "slurm: FAILED: $1" >&2
    tail -n 40 "$2" >&2
    for f in "${W:-/nonexistent}"/log/*.log; do [ -f "$f" ] && tail -n 5 "$f" >&2; done
    exit 1
}

if [ "${1:-}" = --inner ]; then
    W=$2
    inner "$2" "$3" "$4"
    exit 0
fi

[ "$(id -u)" = 0 ] || { echo "slurm: run as root (it installs and starts daemons)" >&2; exit 1; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=$(cd "${1:-$ROOT/.venv}" && pwd)
"$VENV/bin/python" -c "import gradexp, hydra_plugins.hydra_submitit_launcher" ||
    { echo "slurm: $VENV lacks gradexp or the sweeps extra" >&2; exit 1; }
if ! dpkg -s munge slurmctld slurmd slurm-client slurmdbd mariadb-server >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        munge slurmctld slurmd slurm-client slurmdbd mariadb-server >/dev/null
fi
if [ -S /run/munge/munge.socket.2 ] && pgrep -x munged >/dev/null; then
    echo "slurm: a munged is already running on this machine; one cluster at a time" >&2
    exit 1
fi
W=$(mktemp -d /tmp/gradexp-slurm.XXXXXX)
chmod 755 "$W"  # munged (not root) must reach $W/run
echo "slurm: state in $W"
rc=0
unshare --net bash "$0" --inner "$W" "$VENV/bin/python" "$ROOT" || rc=$?
[ $rc = 0 ] && rm -rf "$W"  # kept for a look when something failed
exit $rc
