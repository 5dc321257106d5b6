#!/usr/bin/env bash
# The runs behind docs/results.md "Real TOFU, SmolLM2-135M" (issue 18): reference evaluations, ULD and the
# baselines on the tofu-smollm2 target, forget01, each with its TOFU evaluation.
#
#   scripts/tofu_smollm2.sh WORLD OUT [NAME...]
#
# WORLD is the output of `unlearn prepare --preset tofu-smollm2 --data ../shared/tofu --out WORLD`
# (training only is needed: its eval/ folders are not read). OUT gets one folder per NAME (all by default;
# `scripts/tofu_smollm2.sh WORLD OUT list` prints the names). A finished NAME is skipped, so two shells
# can share OUT with disjoint NAMEs (two lanes at OMP_NUM_THREADS=1 on a 2-core machine).
# TOFU data: TOFU_DATA (default ../shared/tofu), the ULD authors' augmentation: ULD_AUG (../shared/uld_aug).
#
# Every evaluation scores all 40 forget01 rows (forget quality) and the first 100 rows of each utility
# split (retain, real authors, world facts: --max-samples 100), greedy, 200 new tokens; the retain model's
# evaluation is the forget-quality reference of every other row. Every method keeps its last epoch: the
# baselines run 5 (TOFU's unlearning schedule) as full fine-tunes, each learning rate of the grid reported
# (none is selected); ULD runs configs/uld_tofu_smollm2.yaml (4 epochs over the official augmentation), and
# uld_p5_e5 the first, shorter recipe it replaced (5 paraphrases per question, 5 epochs).
set -euo pipefail
WORLD=${1:?usage: scripts/tofu_smollm2.sh WORLD OUT [NAME...]}
OUT=${2:?usage: scripts/tofu_smollm2.sh WORLD OUT [NAME...]}
shift 2
DATA=${TOFU_DATA:-../shared/tofu}
AUG=${ULD_AUG:-../shared/uld_aug}
UNLEARN=${UNLEARN:-unlearn}
EVAL=(--data "$DATA" --forget forget01 --max-samples 100)
REF=(--reference "$OUT/retain/TOFU_EVAL.json")

declare -A RUNS=(
  [retain]="eval --model $WORLD/retain --name retain"
  [target]="eval --model $WORLD/target --name target ${REF[*]}"
  [uld]="run configs/uld_tofu_smollm2.yaml --model $WORLD/target --augment-file $AUG ${REF[*]}"
  [uld_p5_e5]="run configs/uld_tofu_smollm2.yaml method.params.augment_paraphrases=5 train.epochs=5
               --model $WORLD/target --augment-file $AUG ${REF[*]}"
)
ORDER=(retain target uld uld_p5_e5)
for lr in 1e-5 1e-4; do
  for method in ga gd npo_gd simnpo; do
    RUNS[${method}_$lr]="run --method $method --model $WORLD/target --epochs 5 --lr $lr ${REF[*]}"
    ORDER+=("${method}_$lr")
  done
done
for lr in 5e-5 5e-4; do  # RMU's own scale (its default 5e-5)
  RUNS[rmu_$lr]="run --method rmu --model $WORLD/target --epochs 5 --lr $lr ${REF[*]}"
  ORDER+=("rmu_$lr")
done

if [ "${1:-}" = list ]; then printf '%s\n' "${ORDER[@]}"; exit 0; fi
mkdir -p "$OUT"
TIME=()  # peak RSS and wall time of each command into OUT/NAME.time, where GNU time is installed
[ -x /usr/bin/time ] && TIME=(/usr/bin/time -v -o)
for name in "${@:-${ORDER[@]}}"; do
  [ -n "${RUNS[$name]:-}" ] || { echo "error: unknown run $name (see: $0 WORLD OUT list)" >&2; exit 2; }
  out="$OUT/$name"
  if [ -e "$out/TOFU_SUMMARY.json" ] || [ -e "$out/eval/TOFU_SUMMARY.json" ]; then
    echo "== $name: done, skipped"; continue
  fi
  if [ "$name" != retain ]; then  # every other row needs the reference: wait for the other lane's
    while [ ! -e "$OUT/retain/TOFU_EVAL.json" ]; do sleep 20; done
  fi
  # shellcheck disable=SC2086  # RUNS entries are word lists
  cmd=($UNLEARN ${RUNS[$name]} "${EVAL[@]}" --out "$out" --overwrite)
  echo "== $name: ${cmd[*]}"
  if [ ${#TIME[@]} -gt 0 ]; then "${TIME[@]}" "$OUT/$name.time" "${cmd[@]}"; else "${cmd[@]}"; fi
done
