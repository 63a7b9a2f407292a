hardware = "gb200"
recipe = "vllm-gb200-nvfp4"  # 001 seed: NVFP4, DP4 + expert parallel
