#!/usr/bin/env bash
# What `make test` needs on CI beyond the Python image (python:3.11.7-bookworm): Java and the Google
# Cloud CLI's Pub/Sub emulator (tests/triggers), from Google's Debian repository, and terraform
# (`terraform fmt -check`, tests/delivery), from HashiCorp's. Chromium for the report tests is
# installed by .ci/run itself. Each is skipped when present.
set -euo pipefail
TERRAFORM_VERSION=1.11.4
if ! command -v java >/dev/null; then
  apt-get update -qq && apt-get install -y -qq default-jre-headless
fi
if ! command -v gcloud >/dev/null; then
  apt-get update -qq && apt-get install -y -qq apt-transport-https ca-certificates gnupg curl
  curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | gpg --dearmor -o /usr/share/keyrings/cloud.google.gpg
  echo "deb [signed-by=/usr/share/keyrings/cloud.google.gpg] https://packages.cloud.google.com/apt cloud-sdk main" \
    > /etc/apt/sources.list.d/google-cloud-sdk.list
  apt-get update -qq && apt-get install -y -qq google-cloud-cli google-cloud-cli-pubsub-emulator
fi
if ! command -v terraform >/dev/null; then
  apt-get update -qq && apt-get install -y -qq ca-certificates gnupg curl
  curl -fsSL https://apt.releases.hashicorp.com/gpg | gpg --dearmor -o /usr/share/keyrings/hashicorp.gpg
  . /etc/os-release
  echo "deb [signed-by=/usr/share/keyrings/hashicorp.gpg] https://apt.releases.hashicorp.com $VERSION_CODENAME main" \
    > /etc/apt/sources.list.d/hashicorp.list
  apt-get update -qq && apt-get install -y -qq "terraform=${TERRAFORM_VERSION}-*"
fi
