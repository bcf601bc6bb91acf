#!/usr/bin/env bash
# Every unlearning method on the demo setting, measured alike: SmolLM2-135M-Instruct, the
# built-in Sherlock Holmes corpus, retain-training text and dictionary, `whp demo`'s metrics on
# the held-out prompts, relearning, and 100 items of each local benchmark.
# Settings: WHP = the `small` preset (the demo's); GA and GD = the last points before collapse on
# the tune prompts; NPO run to about WHP's training budget in tokens.
# Usage: benchmarks/compare_methods.sh [OUT, default runs/cmp]   (about an hour on 2 free CPU cores)
set -euo pipefail
OUT=${1:-runs/cmp}
D=src/whp/data/demo
WHP=${WHP:-.venv/bin/whp}
INPUTS=(--preset small --model smollm2-135m-instruct --target "$D"/corpus/*.txt)
RETAIN=(--retain "$D/retain_train.txt")
lora() {  # LoRA (as WHP's demo fine-tune), batch 4 x 256 tokens, constant lr 1e-4, N steps
    echo --set "$1.train.lora=true" --set "$1.train.lr=1e-4" --set "$1.train.grad_accum=1" --set "$1.train.max_steps=$2"
}

$WHP unlearn "${INPUTS[@]}" "${RETAIN[@]}" --anchors "$D/anchors.yaml" --out "$OUT/whp"
$WHP unlearn --method whp-inference "${INPUTS[@]}" --set inference.alpha=5 --out "$OUT/whp-inference"
$WHP unlearn --method ga "${INPUTS[@]}" $(lora ga 28) --out "$OUT/ga"
$WHP unlearn --method gd "${INPUTS[@]}" "${RETAIN[@]}" $(lora gd 70) --set gd.retain_weight=3 --out "$OUT/gd"
$WHP unlearn --method npo "${INPUTS[@]}" "${RETAIN[@]}" $(lora npo 150) --out "$OUT/npo"

$WHP compare "$OUT"/{whp,whp-inference,ga,gd,npo} --out "$OUT/compare" \
    --metrics familiarity_probability familiarity_completion retain_perplexity side_effect_probability side_effect_completion relearn_familiarity \
    --benchmarks whp_arc_easy whp_arc_challenge whp_boolq whp_hellaswag whp_openbookqa whp_piqa whp_winogrande \
    --benchmark-data "${BENCHMARK_DATA:-../shared/data/eval}" --limit 100
