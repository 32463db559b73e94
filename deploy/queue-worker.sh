#!/bin/sh
# The queue worker is a Ray driver, and a Ray driver runs on a node of its cluster: this
# container first joins the cluster as a node that offers no CPU or GPU to tasks (it only
# hosts the drivers' controllers), then consumes the job queue (RAY_ADDRESS=auto).
set -eu
ray start --address="${RAY_HEAD_ADDRESS:?set RAY_HEAD_ADDRESS, e.g. ray-head:6379}" \
    --num-cpus=0 --num-gpus=0
export RAY_ADDRESS=auto
exec python -m workers "$@"
