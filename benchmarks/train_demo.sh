#!/usr/bin/env bash
# Reproduce the bundled demo checkpoint (src/vcq_hf/demo/) from scratch on CPU, with the project's own scripts.
# Measured on 2 shared CPU cores (other jobs running, OMP_NUM_THREADS=1 per process): tokenizer 1,800 steps ~24 min,
# codes ~3 min, prior 2,000 steps ~28 min, evaluation ~2 min. Every stage resumes from its last checkpoint if
# interrupted (rerun this script).
#
# The committed checkpoint was made with exactly these commands, except that the tokenizer's first 900 steps ran
# under --max_train_steps 3000 before the run was resumed from checkpoint-900 with --max_train_steps 1800 (the same
# warm-up; the cosine decay of steps 150-900 followed the longer schedule).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
out=${1:-runs/demo}

python examples/train_tokenizer.py --dataset_name fashion-mnist --split train_full --resolution 32 \
  --model_config small-32px --random_flip --train_batch_size 64 --max_train_steps 1800 --learning_rate 1e-3 \
  --lr_scheduler cosine --lr_warmup_steps 150 --checkpointing_steps 300 --checkpoints_total_limit 1 \
  --resume_from_checkpoint latest --validation_steps 1000000000 --seed 0 --output_dir "$out/tokenizer"

[ -f "$out/codes/vcq_meta.json" ] || python examples/extract_codes.py --vq_model_path "$out/tokenizer" \
  --dataset_name fashion-mnist --split train_full --batch_size 500 --output_dir "$out/codes"

python examples/train_ar.py --codes_dir "$out/codes" --model_config small --train_batch_size 64 \
  --max_train_steps 2000 --learning_rate 1e-3 --lr_scheduler cosine --lr_warmup_steps 100 \
  --checkpointing_steps 200 --checkpoints_total_limit 1 --resume_from_checkpoint latest \
  --validation_steps 1000000000 --seed 0 --output_dir "$out/pipeline"

python benchmarks/export_demo.py --pipeline_dir "$out/pipeline" --tokenizer_dir "$out/tokenizer" \
  --output_dir "${DEMO_DIR:-src/vcq_hf/demo}"

for scale in 1.0 2.0; do
  python examples/evaluate_pipeline.py --pipeline_path "${DEMO_DIR:-src/vcq_hf/demo}" --output_dir "$out/eval-cfg$scale" \
    --num_samples_per_class 500 --reference_dataset fashion-mnist --reference_split test --reference_resolution 32 \
    --class_accuracy --guidance_scale "$scale" --batch_size 500
  cp "$out/eval-cfg$scale/metrics.json" "${DEMO_DIR:-src/vcq_hf/demo}/evaluation_cfg$scale.json"
done
python -m vcq_hf.hub.model_card
