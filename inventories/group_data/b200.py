hardware = "b200"
recipe = "lambda-b200-vllm"  # 000 seed: Lambda 8x B200 (lambda-b200-sglang is the SGLang twin)
