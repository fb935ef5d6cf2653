# Shared by infra/install-tools.sh and infra/tfjs-native/install.sh (sourced, not run): step logging with
# elapsed times, logged commands that name their log on failure, a progress line while a long step runs,
# a lock so that two commands (two clones, a test and a developer) never build into one cache at once,
# and the default cache folder. Callers set LOG_TAG and LOG_DIR before using these.

# ${XDG_CACHE_HOME:-~/.cache}/ddpm-temporal: shared by every clone of this user, so a second clone (or the
# fresh clone a CI check makes) starts with the tools already built. DDPM_TOOLS_CACHE / TFJS_NATIVE_CACHE
# move the parts. infra/cache-root.ts computes the same for the TypeScript side.
default_cache_root() {
  if [[ -n "${XDG_CACHE_HOME:-}" ]]; then
    printf '%s/ddpm-temporal' "$XDG_CACHE_HOME"
  else
    # Without HOME, ~ is the user's home from the password database.
    printf '%s/.cache/ddpm-temporal' "${HOME:-$(echo ~)}"
  fi
}

log() { printf '[%s] %s\n' "$LOG_TAG" "$*"; }
die() {
  printf '[%s] ERROR: %s\n' "$LOG_TAG" "$*" >&2
  exit 1
}

# "1m05s" / "42 s" for a number of seconds.
elapsed() {
  local s="$1"
  if ((s >= 60)); then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%d s' "$s"; fi
}

# Runs a long command with its output in $LOG_DIR/<step>.log, printing one line when it starts, a
# progress line every PROGRESS_EVERY seconds (with whatever `progress_fn` says about it, if given), and
# one when it ends; on failure shows the log's tail and stops, naming the step and the log.
# Args: step name, description, progress function ('' for none), command...
PROGRESS_EVERY="${DDPM_INSTALL_PROGRESS_SECONDS:-15}"
run_step() {
  local step="$1" what="$2" progress_fn="$3"
  shift 3
  mkdir -p "$LOG_DIR"
  local logfile="$LOG_DIR/$step.log" started=$SECONDS
  # A new file, not the old one truncated: a cache copied with hard links (cp -al) shares its inodes.
  rm -f "$logfile"
  log "$what..."
  "$@" >"$logfile" 2>&1 &
  local pid=$! next=$((SECONDS + PROGRESS_EVERY)) status
  # The loop wakes every second so a short step ends without waiting out a whole progress interval.
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if ((SECONDS >= next)) && kill -0 "$pid" 2>/dev/null; then
      status=""
      if [[ -n "$progress_fn" ]]; then status="$("$progress_fn" "$logfile" 2>/dev/null || true)"; fi
      log "  $step: $(elapsed $((SECONDS - started)))${status:+, $status}"
      next=$((SECONDS + PROGRESS_EVERY))
    fi
  done
  if ! wait "$pid"; then
    tail -n 25 "$logfile" >&2
    die "step '$step' failed after $(elapsed $((SECONDS - started))) (full log: $logfile); fix the cause above and re-run $0."
  fi
  log "  $step: done in $(elapsed $((SECONDS - started)))"
}

# Holds an exclusive lock on a file for the rest of the script (released when it exits, however it
# exits). Waits for another holder, saying so once. flock(1) is util-linux (every Linux); without it
# (macOS) there is no lock, and concurrent installs into one cache are the user's to avoid.
take_lock() {
  local file="$1"
  command -v flock >/dev/null 2>&1 || return 0
  mkdir -p "$(dirname "$file")"
  exec {LOCK_FD}>>"$file"
  if ! flock -n "$LOCK_FD"; then
    log "waiting for another install into the same cache to finish (lock: $file)..."
    flock "$LOCK_FD"
  fi
}

# Writes a file by renaming a finished temporary copy into place, so a reader never sees half of it.
# Args: path, content.
write_atomically() {
  local tmp
  tmp="$1.tmp.$$"
  printf '%s\n' "$2" >"$tmp"
  mv -f "$tmp" "$1"
}

# Free space, in MB, on the filesystem that holds the directory (or its nearest existing parent).
free_mb() {
  local dir="$1"
  while [[ ! -d "$dir" ]]; do dir="$(dirname "$dir")"; done
  df -Pk "$dir" | awk 'NR == 2 { print int($4 / 1024) }'
}

# Stops with a clear message unless the cache's filesystem has `need_mb` free. Args: dir, need_mb, what.
require_free_space() {
  local have
  have="$(free_mb "$1")"
  if ((have < $2)); then
    die "$3 needs about $(($2 / 1024 + 1)) GB free in $1, but only $((have / 1024)).$(((have % 1024) * 10 / 1024)) GB is free; free some space or point the cache elsewhere (see infra/README.md)."
  fi
}
