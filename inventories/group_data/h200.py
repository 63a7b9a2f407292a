hardware = "h200"
recipe = "vllm-h200-fp8-text-dp-ep"  # 001 seed: FP8, DP8 + expert parallel
