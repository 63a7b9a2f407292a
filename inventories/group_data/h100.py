hardware = "h100"
# BF16 needs 2 H100 nodes (sglang-h100-bf16-tp16-2node); one node serves the FP8 checkpoint.
recipe = "vllm-h200-fp8-text-dp-ep"
