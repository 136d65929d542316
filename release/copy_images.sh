#!/bin/sh
# Copies each image of a promotion, keeping its digest (cloudbuild-promote.yaml, in gcrane's debug
# image: POSIX sh, no bash).
#
#   release/copy_images.sh COPIES
#
# COPIES (written by `python -m release.manifest promote`) has one `SOURCE DESTINATION DIGEST` per
# line: the source image by digest, the destination tagged with the commit. `gcrane cp` copies the
# manifest and layers as they are, so the digest is kept; the copy is read back and must answer it.
set -eu

if [ $# -ne 1 ] || [ ! -s "$1" ]; then
  echo "usage: $0 COPIES (a non-empty file of 'SOURCE DESTINATION DIGEST' lines)" >&2
  exit 2
fi
while read -r source destination digest; do
  [ -n "$source" ] || continue
  if [ "${source##*@}" != "$digest" ]; then
    echo "refusing to copy $source: it is not the image $digest" >&2
    exit 2
  fi
  gcrane cp "$source" "$destination"
  copied=$(gcrane digest "$destination")
  if [ "$copied" != "$digest" ]; then
    echo "$destination answers $copied after the copy, not $digest" >&2
    exit 1
  fi
  echo "copied $source -> $destination ($digest)"
done < "$1"
