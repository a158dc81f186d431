#!/usr/bin/env bash
# Reproduce the bundled demo checkpoint (src/vcq_hf/demo/) from scratch on CPU, with the project's own scripts.
#
# Stages (each resumes from its last checkpoint if interrupted; rerun this script):
#   1. the tokenizer's encoder and codebook: the v1 recipe (linear pixel head, MSE, no perceptual loss, no EMA),
#      log schedule K_t 2 -> 1024, 1,800 steps x 64 (~24 min on 2 shared cores in 2026-11);
#   2. codes of the 60k training images (~3 min), 3. the prior on them, 2,000 steps x 64 (~28 min);
#   4. tokenizer v2: the decoder retrained with the conv pixel head, L1 + EfficientNet-Lite0 perceptual loss and EMA,
#      on the frozen encoder and codebook (train_tokenizer.py --decoder_only), for 40 minutes of training wall time.
#      The codes do not change, so the prior of stage 3 stays valid;
#   4b. the same decoder fine-tuned with the hinge PatchGAN for 14 more minutes (the recipe's stage 2);
#   5. export (the v2 decoder swapped into the pipeline), 6. evaluation with and without guidance (~10 min).
#
# The committed checkpoint: stages 1-3 are the 2026-11 demo (its tokenizer's first 900 steps ran under
# --max_train_steps 3000 before the run was resumed from checkpoint-900 with --max_train_steps 1800: the same warm-up,
# the cosine decay of steps 150-900 followed the longer schedule); stage 4 ran 40 minutes on a 2-core machine shared
# with ~8 other jobs, which gave 1,745 steps, and stage 4b 14 minutes, 1,133 steps (training_summary_decoder.json in the
# demo folder is stage 4b's summary).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
out=${1:-runs/demo}

python examples/train_tokenizer.py --dataset_name fashion-mnist --split train_full --resolution 32 \
  --model_config small-32px --config_overrides decoder_type=linear reconstruction_loss_type=mse \
  --perceptual_loss none --no_use_ema --random_flip --train_batch_size 64 --max_train_steps 1800 \
  --learning_rate 1e-3 --lr_scheduler cosine --lr_warmup_steps 150 --checkpointing_steps 300 \
  --checkpoints_total_limit 1 --resume_from_checkpoint latest --validation_steps 1000000000 --seed 0 \
  --output_dir "$out/tokenizer"

[ -f "$out/codes/vcq_meta.json" ] || python examples/extract_codes.py --vq_model_path "$out/tokenizer" \
  --dataset_name fashion-mnist --split train_full --batch_size 500 --output_dir "$out/codes"

python examples/train_ar.py --codes_dir "$out/codes" --model_config small --train_batch_size 64 \
  --max_train_steps 2000 --learning_rate 1e-3 --lr_scheduler cosine --lr_warmup_steps 100 \
  --checkpointing_steps 200 --checkpoints_total_limit 1 --resume_from_checkpoint latest \
  --validation_steps 1000000000 --seed 0 --output_dir "$out/pipeline"

python examples/train_tokenizer.py --dataset_name fashion-mnist --split train_full --resolution 32 \
  --model_config "$out/tokenizer" --decoder_only \
  --config_overrides decoder_type=conv decoder_conv_channels=32 decoder_conv_layers=1 reconstruction_loss_type=l1 \
  --random_flip --train_batch_size 32 --max_train_steps 100000 --max_train_minutes 40 \
  --lr_scheduler constant_with_warmup --lr_warmup_steps 100 --learning_rate 5e-4 --checkpointing_steps 200 \
  --checkpoints_total_limit 1 --resume_from_checkpoint latest --validation_steps 1000000000 --seed 0 \
  --output_dir "$out/tokenizer_v2"

python examples/train_tokenizer.py --dataset_name fashion-mnist --split train_full --resolution 32 \
  --model_config "$out/tokenizer_v2" --decoder_only --use_discriminator --disc_start_step 0 --disc_weight 0.1 \
  --disc_num_layers 2 --random_flip --train_batch_size 32 --max_train_steps 100000 --max_train_minutes 14 \
  --lr_scheduler constant_with_warmup --lr_warmup_steps 100 --learning_rate 5e-4 --checkpointing_steps 200 \
  --checkpoints_total_limit 1 --resume_from_checkpoint latest --validation_steps 1000000000 --seed 0 \
  --output_dir "$out/tokenizer_v2_gan"

python benchmarks/export_demo.py --pipeline_dir "$out/pipeline" --tokenizer_dir "$out/tokenizer" \
  --vq_model_dir "$out/tokenizer_v2_gan" --output_dir "${DEMO_DIR:-src/vcq_hf/demo}"

for scale in 1.0 2.0; do
  python examples/evaluate_pipeline.py --pipeline_path "${DEMO_DIR:-src/vcq_hf/demo}" --output_dir "$out/eval-cfg$scale" \
    --num_samples_per_class 500 --reference_dataset fashion-mnist --reference_split test --reference_resolution 32 \
    --class_accuracy --guidance_scale "$scale" --batch_size 500
  cp "$out/eval-cfg$scale/metrics.json" "${DEMO_DIR:-src/vcq_hf/demo}/evaluation_cfg$scale.json"
done
python -m vcq_hf.hub.model_card
