# shellcheck shell=bash
# Helpers shared by scripts/install and scripts/uninstall (sourced, not run). They expect ROOT and DRY_RUN set.
# Every change goes through `run` (or a helper built on it), so --dry-run prints exactly what a real run would do.

# Normalises ROOT and sets STAGING=1 when installing into a directory other than /.
staging_setup() {
  if [ "$ROOT" != / ]; then
    ROOT="$(realpath -m "$ROOT")"
  fi
  STAGING=0
  [ "$ROOT" = / ] || STAGING=1
  if [ "$STAGING" -eq 1 ]; then
    say "staging into $ROOT: apt-get, daemon-reload and starting/stopping units are skipped"
  fi
  if [ "$DRY_RUN" -eq 1 ]; then
    say "dry run: nothing is changed"
  fi
}

# A path on the target system, inside ROOT when staging.
r() {
  if [ "$ROOT" = / ]; then printf '%s' "$1"; else printf '%s%s' "$ROOT" "$1"; fi
}

step() { printf '== %s\n' "$*"; }
say() { printf '   %s\n' "$*"; }
skipped() { printf '   skipped (staging): %s\n' "$*"; }

run() {
  printf '   + %s\n' "$*"
  [ "$DRY_RUN" -eq 1 ] || "$@"
}

# install_file MODE SOURCE TARGET: copies when the target is missing or differs, so a re-run leaves it untouched.
install_file() {
  local mode="$1" source="$2" target
  target="$(r "$3")"
  if cmp -s "$source" "$target" && [ "$(stat -c %a "$target")" = "${mode#0}" ]; then
    return 0
  fi
  run install -D -m "$mode" "$source" "$target"
}

# ensure_dir MODE PATH: creates the directory (on the target) or fixes its mode; does nothing when both are right.
ensure_dir() {
  local mode="$1" dir
  dir="$(r "$2")"
  if [ ! -d "$dir" ]; then
    run install -d -m "$mode" "$dir"
  elif [ "$(stat -c %a "$dir")" != "${mode#0}" ]; then
    run chmod "$mode" "$dir"
  fi
}

# new_key_file PATH COMMAND...: writes COMMAND's output as a 0600 file at PATH, and only if PATH does not exist.
# The key is written and synced to a temporary file first and then hard-linked into place: link(2) fails if PATH
# exists, so two installs racing cannot replace each other's key, and a power cut never leaves a short key behind.
new_key_file() {
  local path="$1"
  shift
  say "creating $path (32 random bytes, 0600 root)"
  [ "$DRY_RUN" -eq 1 ] && return 0
  local tmp
  tmp="$(mktemp "$(dirname "$path")/.kotihub.key.XXXXXX")"
  (umask 077 && "$@" > "$tmp")
  if [ "$(stat -c %s "$tmp")" -ne 32 ]; then
    rm -f "$tmp"
    echo "install: could not produce a 32-byte key" >&2
    exit 1
  fi
  chmod 0600 "$tmp"
  sync "$tmp"
  if ! ln "$tmp" "$path"; then
    rm -f "$tmp"
    echo "install: $path appeared meanwhile; not replacing it" >&2
    exit 1
  fi
  rm -f "$tmp"
  sync "$(dirname "$path")"
}

# The kotihub uid:gid on the target (from ROOT/etc/passwd when staging), or nothing if there is no such user.
kotihub_ids() {
  local passwd
  passwd="$(r /etc/passwd)"
  [ -f "$passwd" ] || return 0
  awk -F: '$1 == "kotihub" { print $3 ":" $4 }' "$passwd"
}

# chown_to_kotihub PATH: hands PATH (on the target) to the kotihub user. Needs root; a staging run by another
# user leaves ownership alone and says so.
chown_to_kotihub() {
  local ids
  ids="$(kotihub_ids)"
  if [ -z "$ids" ]; then
    [ "$DRY_RUN" -eq 1 ] && { say "would chown $1 to kotihub"; return 0; }
    echo "install: no kotihub user in $(r /etc/passwd)" >&2
    exit 1
  fi
  if [ "$(id -u)" -ne 0 ]; then
    say "not root: leaving $1 owned by $(id -un)"
    return 0
  fi
  # Recursively: after an uninstall and reinstall the user may have a new uid, and systemd re-owns a state
  # directory only when its top level is wrong, so fixing the top level alone would hide the stale files inside.
  [ "$(stat -c %u:%g "$(r "$1")")" = "$ids" ] || run chown -R "$ids" "$(r "$1")"
}
