#!/usr/bin/env bash
# slurm-local.sh — a one-node Slurm cluster on THIS machine, for trying the
# book's Slurm/submitit examples without a real cluster.
#
#   scripts/slurm-local.sh start    install (if needed), configure, start, check
#   scripts/slurm-local.sh stop     stop the daemons this script started
#   scripts/slurm-local.sh status   show daemons + sinfo; exit 0 only if all run
#
# Layout: everything lives in the state directory
# ${SLURM_LOCAL_DIR:-/tmp/gdw-slurm}: slurm.conf, a private munged (key,
# socket, pid, log), slurmctld state, slurmd spool, pid files and logs.
#
# Where client commands find the config: the config is written to
# $STATE/slurm.conf and also copied to /etc/slurm/slurm.conf (Debian's default
# path, which sbatch/squeue/srun read when SLURM_CONF is unset) -- but only if
# that file is absent or was written by this script (marker line). So with the
# default setup nobody has to export anything. If /etc/slurm/slurm.conf belongs
# to someone else, `start` says so and you must `export SLURM_CONF=...` (the
# line is printed at the end of `start` in any case).
#
# Daemons run as root (SlurmUser=root): slurmd must be root to run jobs as the
# submitting user anyway, and it spares us chown-ing the state dir to `slurm`.
# No cgroups are used (proctrack/linuxproc, task/none), so it works in
# containers and VMs without a delegated cgroup tree.
set -euo pipefail

STATE=${SLURM_LOCAL_DIR:-/tmp/gdw-slurm}
CONF=$STATE/slurm.conf
ETC_CONF=/etc/slurm/slurm.conf
MARKER="# written by gdw-book scripts/slurm-local.sh"
MUNGE_DIR=$STATE/munge
MUNGE_SOCKET=$MUNGE_DIR/munge.socket
PID_MUNGED=$MUNGE_DIR/munged.pid
PID_CTLD=$STATE/slurmctld.pid
PID_SLURMD=$STATE/slurmd.pid
# Requeued jobs get BeginTime = now + cred_expire + 1 (default 120 s, minimum
# 5). A short credential lifetime is harmless on one idle node and makes a
# requeued job eligible again after ~11 s instead of ~2 min.
CRED_EXPIRE=${SLURM_LOCAL_CRED_EXPIRE:-10}
export SLURM_CONF=$CONF

die() { echo "slurm-local: $*" >&2; exit 1; }
log() { echo "slurm-local: $*"; }

# Daemon name -> pid file. Order matters: started in this order, stopped reversed.
DAEMONS=(munged slurmctld slurmd)
pidfile_of() {
  case $1 in
    munged) echo "$PID_MUNGED" ;;
    slurmctld) echo "$PID_CTLD" ;;
    slurmd) echo "$PID_SLURMD" ;;
  esac
}

# Running = pid file names a live process whose command is that daemon (so a
# stale pid file reused by an unrelated process is not mistaken for it).
running_pid() {
  local f pid
  f=$(pidfile_of "$1")
  [[ -r $f ]] || return 1
  pid=$(tr -dc '0-9' <"$f")
  [[ -n $pid ]] && alive "$pid" || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]] || return 1
  echo "$pid"
}

# Alive = exists and is not a zombie (PID 1 here may reap our daemonized
# processes late, and a zombie still has a /proc entry).
alive() {
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $st && $st != Z ]]
}

all_running() {
  local d
  for d in "${DAEMONS[@]}"; do running_pid "$d" >/dev/null || return 1; done
}

# Daemons need root: re-run the whole script through sudo when we are not root.
need_root() {
  [[ $(id -u) == 0 ]] && return 0
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    exec sudo -n env SLURM_LOCAL_DIR="$STATE" SLURM_LOCAL_CRED_EXPIRE="$CRED_EXPIRE" "$0" "$@"
  fi
  return 1
}

# Programs we need that are not installed (empty output: all there).
missing_programs() {
  local p
  for p in /usr/sbin/slurmctld /usr/sbin/slurmd /usr/sbin/munged /usr/bin/munge /usr/bin/sinfo /usr/bin/srun; do
    [[ -x $p ]] || echo "${p##*/}"
  done
}

install_packages() {
  local missing
  mapfile -t missing < <(missing_programs)
  ((${#missing[@]} == 0)) && return 0
  command -v apt-get >/dev/null ||
    { echo "slurm-local: Slurm cannot be installed here: ${missing[*]} missing and there is no apt-get." >&2; exit 3; }
  log "installing slurm-wlm and munge with apt-get (log: $STATE/apt.log)"
  # policy-rc.d / no systemd keep the packages' own services from starting;
  # we start private daemons below. Retry after `apt-get update` because a
  # fresh machine may have no package lists yet.
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends slurm-wlm munge >"$STATE/apt.log" 2>&1; then
    apt-get update -q >>"$STATE/apt.log" 2>&1 || true
    apt-get install -y -q --no-install-recommends slurm-wlm munge >>"$STATE/apt.log" 2>&1 ||
      { echo "slurm-local: Slurm cannot be installed here: apt-get install slurm-wlm munge failed (see $STATE/apt.log)." >&2; exit 3; }
  fi
}

write_config() {
  local host cpus mem_mb margin real defmem
  host=$(hostname -s)
  cpus=$(nproc)
  mem_mb=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024))
  # Leave room for the OS and the daemons: 5% but at least 512 MB. slurmd
  # drains a node whose RealMemory exceeds what it detects.
  margin=$((mem_mb / 20)); ((margin < 512)) && margin=512
  real=$((mem_mb - margin))
  # With CR_Core_Memory a job without --mem would otherwise get the whole
  # node's memory and jobs would run one at a time.
  defmem=$((real / cpus))
  mkdir -p "$STATE/ctld" "$STATE/spool" "$STATE/log"
  cat >"$CONF.tmp" <<EOF
$MARKER
# One-node cluster for $host; state directory $STATE.
ClusterName=gdwlocal
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# Private munged socket; cred_expire also sets the post-requeue hold (see script).
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=$CRED_EXPIRE
# No cgroups: works in containers/VMs without cgroup delegation.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
# No mail on this machine; the default /usr/bin/mail is absent (error in log).
MailProg=/bin/true
SwitchType=switch/none
SchedulerType=sched/backfill
# Scan the queue every 2 s instead of 60 s (main) / 30 s (backfill).
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$defmem
ReturnToService=2
# Trust slurm.conf's node description instead of draining on small mismatches.
SlurmdParameters=config_overrides
# Short timeouts: finished jobs leave squeue after 10 s, cancels escalate fast.
MinJobAge=10
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=10
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$PID_CTLD
SlurmdPidFile=$PID_SLURMD
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$CONF.tmp" "$CONF"
  # Debian's clients read /etc/slurm/slurm.conf by default: publish ours there
  # unless someone else's config is in the way.
  if [[ ! -e $ETC_CONF ]] || head -n1 "$ETC_CONF" | grep -qxF "$MARKER"; then
    mkdir -p "$(dirname "$ETC_CONF")"
    cp "$CONF" "$ETC_CONF"
    ETC_OK=1
  else
    ETC_OK=0
    log "note: $ETC_CONF is not ours; left alone -- export SLURM_CONF=$CONF"
  fi
}

start_munged() {
  running_pid munged >/dev/null && return 0
  # 0755: job users' srun must reach the socket.
  mkdir -p "$MUNGE_DIR"
  chmod 0755 "$MUNGE_DIR"
  # Reuse the system key if there is one (so the system munge and ours agree),
  # else make a private one. munged wants a key owned by its user, mode 0400.
  if [[ ! -s $MUNGE_DIR/munge.key ]]; then
    if [[ -r /etc/munge/munge.key ]]; then
      cp /etc/munge/munge.key "$MUNGE_DIR/munge.key"
    else
      dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1024 count=1 status=none
    fi
  fi
  chmod 0400 "$MUNGE_DIR/munge.key"
  rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
  # --force: keep munged's permission checks on key/socket/log paths from
  # stopping it (not needed on this VM, but cheap insurance for odd /tmp setups).
  /usr/sbin/munged --force --key-file="$MUNGE_DIR/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$PID_MUNGED" --log-file="$MUNGE_DIR/munged.log" \
    --seed-file="$MUNGE_DIR/munge.seed" ||
    die "munged failed to start (see $MUNGE_DIR/munged.log)"
  local i
  for i in $(seq 50); do
    munge -n -S "$MUNGE_SOCKET" 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "munged runs but its socket $MUNGE_SOCKET does not work (see $MUNGE_DIR/munged.log)"
}

start_slurm_daemon() {
  local d=$1
  running_pid "$d" >/dev/null && return 0
  "/usr/sbin/$d" -f "$CONF" || die "$d failed to start (see $STATE/log/$d.log)"
  local i
  for i in $(seq 50); do
    running_pid "$d" >/dev/null && return 0
    sleep 0.2
  done
  die "$d did not come up (see $STATE/log/$d.log)"
}

wait_idle() {
  local host state i
  host=$(hostname -s)
  for i in $(seq 60); do
    state=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
    case $state in
      *'*'*) ;; # "idle*" = not responding: slurmd has not registered yet
      idle* | mixed* | allocated*) return 0 ;;
    esac
    sleep 0.5
  done
  sinfo -R >&2 || true
  die "node $host is not idle after 30 s (state '${state:-?}'; see $STATE/log/)"
}

cmd_start() {
  if all_running; then
    log "already running (state in $STATE)"
    echo "export SLURM_CONF=$CONF"
    return 0
  fi
  need_root start || {
    if [[ -n $(missing_programs) ]]; then
      echo "slurm-local: Slurm cannot be installed here: not root, and no passwordless sudo to run apt-get." >&2
    else
      echo "slurm-local: Slurm cannot be started here: its daemons need root, and there is no passwordless sudo." >&2
    fi
    exit 3
  }
  mkdir -p "$STATE"
  install_packages
  # Keep the config of daemons that still run; rewrite it when none do.
  ETC_OK=1
  if running_pid slurmctld >/dev/null || running_pid slurmd >/dev/null; then
    [[ -f $CONF ]] || die "a daemon runs but $CONF is gone; run '$0 stop' first"
  else
    write_config
  fi
  start_munged
  start_slurm_daemon slurmctld
  start_slurm_daemon slurmd
  wait_idle
  local out
  out=$(timeout 60 srun -N1 hostname) || die "check 'srun -N1 hostname' failed"
  log "up: srun -N1 hostname -> $out"
  ((ETC_OK)) && log "config also at $ETC_CONF, so SLURM_CONF need not be set"
  echo "export SLURM_CONF=$CONF"
}

cmd_stop() {
  # Nothing of ours runs -> nothing to do (and no root needed).
  local d any=0
  for d in "${DAEMONS[@]}"; do running_pid "$d" >/dev/null && any=1; done
  ((any)) || { log "not running"; return 0; }
  need_root stop || die "stop needs root (or sudo) to signal the daemons"
  local i pid
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    d=${DAEMONS[i]}
    pid=$(running_pid "$d") || continue
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      log "$d ($pid) ignored SIGTERM for 10 s; killing"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$(pidfile_of "$d")"
    log "stopped $d ($pid)"
  done
}

cmd_status() {
  local d pid rc=0
  for d in "${DAEMONS[@]}"; do
    if pid=$(running_pid "$d"); then
      echo "$d: running (pid $pid)"
    else
      echo "$d: not running"
      rc=1
    fi
  done
  if command -v sinfo >/dev/null && [[ -f $CONF ]]; then
    sinfo 2>&1 || true
  fi
  return $rc
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 start|stop|status   (state dir: $STATE)" >&2; exit 2 ;;
esac
