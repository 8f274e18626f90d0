# Sourced by analyses/run_all.sh, diagnose.sh and beyond_paper.sh: a command run with its output
# in a log file, and the verdict lines a figure script wrote there.
logged() {  # LOG CMD...: run CMD with its output in the file LOG; on failure, say where and stop
  mkdir -p "$(dirname "$1")"
  "${@:2}" > "$1" 2>&1 || { echo "failed: ${*:2} (its output: $1)" >&2; tail -5 "$1" >&2; exit 1; }
}
verdicts() {  # LOG [WIDTH]: the claims' verdict lines in LOG, each cut to WIDTH characters
  grep -E '^\[(confirmed|NOT confirmed|undetermined)\]' "$1" | cut -c1-"${2:-160}" || true
}
