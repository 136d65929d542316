#!/usr/bin/env bash
# Deploys a release's function code to every function Terraform created for it (cloudbuild.yaml).
#
#   release/deploy_functions.sh PROJECT REGION SOURCE_BUCKET RELEASE DEPLOYER_SA
#
# For each deploy folder `make functions` wrote (build/functions/KIND): zip it, upload it as
# gs://SOURCE_BUCKET/functions/KIND/RELEASE.zip (as the build), then, impersonating DEPLOYER_SA,
# redeploy every function labelled mlops-function=KIND (terraform/modules/platform/functions.tf) from
# that zip. Only the code changes: entry point, runtime, trigger, variables and identity stay as
# Terraform set them.
set -euo pipefail

if [[ $# -ne 5 ]]; then
  echo "usage: $0 PROJECT REGION SOURCE_BUCKET RELEASE DEPLOYER_SA" >&2
  exit 2
fi
project=$1 region=$2 bucket=$3 release=$4 deployer=$5
root=build/functions
shopt -s nullglob
folders=("$root"/*/)
if [[ ${#folders[@]} -eq 0 ]]; then
  echo "no deploy folders under $root: run \`make functions\` first" >&2
  exit 2
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for folder in "${folders[@]}"; do
  kind=$(basename "$folder")
  archive="$scratch/$kind.zip"
  (cd "$folder" && python3 -m zipfile -c "$archive" ./*)
  source="gs://$bucket/functions/$kind/$release.zip"
  gcloud storage cp "$archive" "$source" --project="$project" --quiet
  names=$(gcloud functions list --project="$project" --regions="$region" \
    --filter="labels.mlops-function=$kind" --format='value(name)' --impersonate-service-account="$deployer")
  if [[ -z $names ]]; then
    echo "no function labelled mlops-function=$kind in $project/$region: terraform apply the environment first" >&2
    exit 1
  fi
  for name in $names; do
    echo "deploying ${name##*/} from $source"
    gcloud functions deploy "${name##*/}" --gen2 --project="$project" --region="$region" --source="$source" \
      --impersonate-service-account="$deployer" --quiet
  done
done
