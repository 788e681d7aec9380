# Shared by the pipeline recipes (source it; not a recipe itself).
#
# Every step writes its own file in OUT and is skipped when that file exists, so after a failure
# you fix the cause and rerun the same command: the finished steps are kept, the failed one runs
# again. FORCE="decode interpolate" (step names) reruns named steps even when their file exists.
# Files are written atomically by vidtool, so a step killed halfway leaves no file behind.

# step NAME OUTPUT COMMAND...  — run COMMAND unless OUTPUT exists (or NAME is in $FORCE).
step() {
  local name=$1 output=$2
  shift 2
  if [ -e "$output" ] && [[ " ${FORCE:-} " != *" $name "* ]]; then
    echo "recipe: $name: $output exists, skipped (FORCE=\"$name\" reruns it)" >&2
    return 0
  fi
  echo "recipe: $name → $output" >&2
  "$@" || { status=$?; echo "recipe: step '$name' failed (status $status); fix it and rerun this recipe, finished steps are kept" >&2; exit $status; }
}

# need FILE WHAT — exit 2 with one line when an input is missing.
need() {
  [ -e "$1" ] || { echo "recipe: $2 not found: $1" >&2; exit 2; }
}

VIDTOOL=${VIDTOOL:-vidtool}
