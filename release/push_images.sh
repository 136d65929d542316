#!/usr/bin/env bash
# Pushes the release's images and records them by digest (cloudbuild.yaml, in the docker builder).
#
#   release/push_images.sh REPOSITORY TAG OUTPUT
#
# For pipeline and serving: `docker push REPOSITORY/NAME:TAG`, then the digest the registry gave it,
# as `docker inspect` reports it (RepoDigests: REPOSITORY/NAME@sha256:...). OUTPUT (images.json) maps
# each image to that reference; every later step names the images by it, never by the movable tag.
set -euo pipefail

if [[ $# -ne 3 ]]; then
  echo "usage: $0 REPOSITORY TAG OUTPUT" >&2
  exit 2
fi
repository=$1 tag=$2 output=$3
mkdir -p "$(dirname "$output")"
entries=()
for name in pipeline serving; do
  image="$repository/$name:$tag"
  docker push "$image"
  reference=$(docker inspect --format='{{range .RepoDigests}}{{println .}}{{end}}' "$image" | grep -F "$repository/$name@sha256:" | head -n 1)
  if [[ -z $reference ]]; then
    echo "no digest for $image after pushing it: docker inspect shows no $repository/$name@sha256:..." >&2
    exit 1
  fi
  entries+=("\"$name\": \"$reference\"")
done
printf '{%s, %s}\n' "${entries[0]}" "${entries[1]}" > "$output"
echo "pushed: $(cat "$output")"
