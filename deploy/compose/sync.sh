#!/usr/bin/env bash
# Regenerates deploy/compose/config/ from gateway-configs/: every file is copied byte for byte
# except 00-backends.yaml, the compose variant (DNS endpoints naming the docker-compose.yml
# services), which is kept as it is and maintained by hand. Files gone from gateway-configs/
# are removed here too.
#   deploy/compose/sync.sh            copy what differs, remove what is gone
#   deploy/compose/sync.sh --check    change nothing; list differences and exit 1 if any
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
src="$(cd "$here/../../gateway-configs" && pwd)"
dest="$here/config"
keep="00-backends.yaml"

check=false
case "${1:-}" in
  "") ;;
  --check) check=true ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

status=0
mkdir -p "$dest"

while IFS= read -r -d '' file; do
  rel="${file#"$src"/}"
  [ "$rel" = "$keep" ] && continue
  cmp -s "$file" "$dest/$rel" && continue
  if $check; then
    echo "differs from gateway-configs/: $rel"
    status=1
  else
    mkdir -p "$(dirname "$dest/$rel")"
    cp "$file" "$dest/$rel"
    echo "copied $rel"
  fi
done < <(find "$src" -type f -print0)

while IFS= read -r -d '' file; do
  rel="${file#"$dest"/}"
  [ "$rel" = "$keep" ] && continue
  [ -e "$src/$rel" ] && continue
  if $check; then
    echo "not in gateway-configs/: $rel"
    status=1
  else
    rm "$file"
    echo "removed $rel"
  fi
done < <(find "$dest" -type f -print0)

if [ ! -f "$dest/$keep" ]; then
  echo "missing $dest/$keep: write the compose backends by hand (see its git history)" >&2
  status=1
fi
exit "$status"
