#!/usr/bin/env python3
"""Tiny random checkpoints of every MoE family, written by Hugging Face transformers itself,
with each MoE block's forward as transformers computes it: the fixtures of
test/transformers-conformance.test.ts (test/fixtures/transformers/).

    python3 scripts/make-transformers-fixtures.py OUT_DIR

Needs torch and transformers (made with torch 2.11, transformers 5.17); runs on the CPU, no
network. For each case it
  1. builds the model from transformers' own config and model classes, draws every parameter
     at random (seeded; norms near 1, biases and DeepSeek's correction bias non-zero), and
     writes it with save_pretrained (safetensors) in the case's dtype;
  2. loads that folder back with from_pretrained in float32 (the stored values widened
     exactly) and runs T tokens through the whole model, recording each MoE block's input and
     output with a forward hook: forward.json;
  3. writes config-other-spelling.json: config.json with every key of the config class's
     attribute_map renamed to its alias, and checks that transformers reads it into the same
     model (same forward, bit for bit);
  4. checks the recorded forward against the same model in float64: a route that flips
     between the two (a near-tie of router scores) would make the fixture fragile, so another
     seed is drawn. With transformers 5.17 the float64 forward fails (the experts' default
     grouped_mm has no float64 kernel): manifest.json records f64_error and the first seed
     stands; the conformance test's 1e-5 agreement on the f32 cases shows no route there sits
     on a near-tie.
For gpt-oss it also writes an MXFP4 checkpoint: through transformers' own quantizer if it can
save one (it needs triton kernels from the hub here, so it is tried and the outcome recorded),
else by quantizing the BF16 experts here (OCP MX rule) and letting transformers dequantize
them on load (Mxfp4Config(dequantize=True)): the recorded forward is then transformers'
reading of those blocks.
manifest.json records versions, each config class's attribute_map, the tensors written and
every outcome.
"""
import glob
import json
import os
import shutil
import sys
import traceback

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

TOKENS = 20  # 20 tokens x top-2 / 8 experts = 5 per expert: the prefill regime; the first 3 rows are decode
VOCAB = 32
PARAM_STD = 0.15  # large enough that swiglu_limit and routing margins matter, small enough to stay O(1)
SEEDS = range(1, 9)
F64_AGREEMENT = 1e-4  # f32 vs f64 forward, relative: above this a route flipped

CASES = [
    dict(name="gpt-oss-bf16", family="gpt-oss", model="GptOssForCausalLM", config="GptOssConfig", dtype="bfloat16",
         kwargs=dict(hidden_size=64, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                     num_key_value_heads=1, head_dim=16, num_local_experts=8, num_experts_per_tok=2,
                     sliding_window=8, max_position_embeddings=64),
         # transformers' GptOssExperts clamps at a fixed 7.0: gate·x must reach past it
         std={"experts.gate_up_proj": 1.0}),
    dict(name="mixtral-f32", family="mixtral", model="MixtralForCausalLM", config="MixtralConfig", dtype="float32",
         kwargs=dict(hidden_size=40, intermediate_size=20, num_hidden_layers=2, num_attention_heads=2,
                     num_key_value_heads=1, head_dim=20, num_local_experts=8, num_experts_per_tok=2,
                     max_position_embeddings=64)),
    dict(name="qwen3-moe-bf16", family="qwen-moe", model="Qwen3MoeForCausalLM", config="Qwen3MoeConfig", dtype="bfloat16",
         kwargs=dict(hidden_size=64, intermediate_size=96, moe_intermediate_size=48, num_hidden_layers=2,
                     num_attention_heads=2, num_key_value_heads=1, head_dim=16, num_experts=8,
                     num_experts_per_tok=2, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
                     max_position_embeddings=64)),
    dict(name="qwen2-moe-f32", family="qwen-moe", model="Qwen2MoeForCausalLM", config="Qwen2MoeConfig", dtype="float32",
         kwargs=dict(hidden_size=32, intermediate_size=48, moe_intermediate_size=16, shared_expert_intermediate_size=24,
                     num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, num_experts=8,
                     num_experts_per_tok=2, norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[0],
                     max_position_embeddings=64)),
    dict(name="deepseek-v3-f32", family="deepseek-v3", model="DeepseekV3ForCausalLM", config="DeepseekV3Config", dtype="float32",
         kwargs=dict(hidden_size=48, intermediate_size=40, moe_intermediate_size=24, num_hidden_layers=3,
                     num_attention_heads=2, num_key_value_heads=2, n_routed_experts=8, n_shared_experts=1,
                     num_experts_per_tok=2, n_group=4, topk_group=2, routed_scaling_factor=2.5,
                     first_k_dense_replace=1, norm_topk_prob=True, q_lora_rank=16, kv_lora_rank=16,
                     qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=8, max_position_embeddings=64)),
]

manifest = {"torch": torch.__version__, "transformers": transformers.__version__, "cases": {}}


def log(*a):
    print(*a, flush=True)


def moe_blocks(model):
    """{layer index: the layer's MoE block module} (the module with experts and a router)."""
    blocks = {}
    for n, layer in enumerate(model.model.layers):
        for attr in ("mlp", "block_sparse_moe"):
            m = getattr(layer, attr, None)
            if m is not None and hasattr(m, "experts"):
                blocks[n] = m
    return blocks


def randomize(model, seed, stds):
    """Every parameter and buffer N(0, PARAM_STD) (stds: per name suffix), norms 1 + N(0, 0.1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not t.is_floating_point() or "inv_freq" in name or "rotary" in name:
                continue
            r = torch.randn(t.shape, generator=g, dtype=torch.float32)
            parts = name.split(".")
            is_norm = len(parts) >= 2 and "norm" in parts[-2]
            std = next((v for k, v in stds.items() if name.endswith(k)), PARAM_STD)
            t.copy_((1 + 0.1 * r) if is_norm else std * r)


def record_forward(model, ids):
    """{layer: (input [T, H], output [T, H])} of every MoE block in one forward of the model."""
    seen = {}
    hooks = []
    for n, block in moe_blocks(model).items():
        def hook(mod, args, kwargs, out, n=n):
            x = args[0] if args else kwargs["hidden_states"]
            y = out[0] if isinstance(out, tuple) else out
            seen[n] = (x.detach().reshape(-1, x.shape[-1]).clone(), y.detach().reshape(-1, y.shape[-1]).clone())
        hooks.append(block.register_forward_hook(hook, with_kwargs=True))
    with torch.no_grad():
        model(input_ids=ids)
    for h in hooks:
        h.remove()
    return seen


def rel(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


def load(cls, d, dtype, **kw):
    return cls.from_pretrained(d, dtype=dtype, attn_implementation="eager", **kw).eval()


def tensors_of(d):
    out = {}
    for f in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        with safe_open(f, "pt") as s:
            for k in s.keys():
                t = s.get_slice(k)
                out[k] = [t.get_dtype(), list(t.get_shape())]
    return out


def write_forward(path, seen, ids, note):
    layers = {str(n): {"input": x.float().tolist(), "output": y.float().tolist()} for n, (x, y) in sorted(seen.items())}
    with open(path, "w") as f:
        json.dump({"note": note, "torch": torch.__version__, "transformers": transformers.__version__,
                   "input_ids": ids.tolist()[0], "layers": layers}, f)


def other_spelling(cfg_cls, saved):
    """config.json with each attribute_map key the file holds under its canonical name renamed to its alias."""
    amap = dict(getattr(cfg_cls, "attribute_map", {}) or {})
    alt = dict(saved)
    renamed = {}
    for alias, canonical in amap.items():
        if canonical in alt and alias not in alt:
            alt[alias] = alt.pop(canonical)
            renamed[canonical] = alias
    return alt, renamed


def make_case(case, out):
    info = {"family": case["family"], "dtype": case["dtype"]}
    manifest["cases"][case["name"]] = info
    cfg_cls = getattr(transformers, case["config"])
    model_cls = getattr(transformers, case["model"])
    info["attribute_map"] = dict(getattr(cfg_cls, "attribute_map", {}) or {})
    d = os.path.join(out, case["name"])
    for seed in SEEDS:
        shutil.rmtree(d, ignore_errors=True)
        torch.manual_seed(seed)
        config = cfg_cls(vocab_size=VOCAB, tie_word_embeddings=False, **case["kwargs"])
        model = model_cls(config).eval()
        randomize(model, seed, case.get("std", {}))
        model.to(getattr(torch, case["dtype"]))
        model.save_pretrained(d)
        ids = torch.randint(0, VOCAB, (1, TOKENS), generator=torch.Generator().manual_seed(100 + seed))
        m32 = load(model_cls, d, torch.float32)
        seen = record_forward(m32, ids)
        try:
            seen64 = record_forward(load(model_cls, d, torch.float64), ids)
            agreement = max(rel(seen[n][1], seen64[n][1]) for n in seen)
        except Exception as e:  # noqa: BLE001 - recorded, the fixture stands without the check
            agreement = None
            info["f64_error"] = f"{type(e).__name__}: {e}"
        info.update(seed=seed, f32_vs_f64=agreement)
        if agreement is None or agreement < F64_AGREEMENT:
            break
        log(case["name"], "seed", seed, "f32 vs f64", agreement, "-> next seed")
    info["moe_layers"] = sorted(seen)
    info["block_class"] = type(next(iter(moe_blocks(m32).values()))).__name__
    if case["family"] == "gpt-oss":
        ex = next(iter(moe_blocks(m32).values())).experts
        info["experts_alpha_limit"] = [getattr(ex, "alpha", None), getattr(ex, "limit", None)]
    write_forward(os.path.join(d, "forward.json"), seen, ids, f"{case['name']}: MoE blocks of {case['model']} in float32")
    with open(os.path.join(d, "config.json")) as f:
        saved = json.load(f)
    info["config_keys"] = sorted(saved)
    alt, renamed = other_spelling(cfg_cls, saved)
    info["other_spelling"] = renamed
    with open(os.path.join(d, "config-other-spelling.json"), "w") as f:
        json.dump(alt, f, indent=2)
    alt_dir = d + "-alt"
    shutil.copytree(d, alt_dir)
    shutil.copy(os.path.join(d, "config-other-spelling.json"), os.path.join(alt_dir, "config.json"))
    alt_seen = record_forward(load(model_cls, alt_dir, torch.float32), ids)
    info["other_spelling_same_forward"] = all(torch.equal(alt_seen[n][1], seen[n][1]) for n in seen)
    shutil.rmtree(alt_dir)
    info["tensors"] = tensors_of(d)
    info["max_abs_output"] = max(float(y.abs().max()) for _, y in seen.values())
    log(case["name"], json.dumps({k: info[k] for k in ("seed", "f32_vs_f64", "moe_layers", "other_spelling", "other_spelling_same_forward")}))
    return d, model_cls, ids


E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=torch.float64)


def quantize_mxfp4(w):
    """w [..., rows, depth] (depth % 32 == 0) -> blocks u8 [..., rows, depth/32, 16], scales u8 [..., rows, depth/32]."""
    w = w.double()
    b = w.reshape(*w.shape[:-1], w.shape[-1] // 32, 32)
    amax = b.abs().amax(-1)
    s = torch.where(amax > 0, torch.floor(torch.log2(amax.clamp_min(1e-300))) - 2 + 127, torch.zeros_like(amax)).clamp(0, 254)
    x = b / torch.exp2(s - 127)[..., None]
    d = (x.abs()[..., None] - E2M1).abs()
    # nearest e2m1 value, ties to the even code
    key = d * 4 + (torch.arange(8, dtype=torch.float64) % 2) * 1e-12
    code = key.argmin(-1)
    code = code | ((x < 0) & (code > 0)).long() << 3
    code = code.to(torch.uint8)
    packed = code[..., 0::2] | (code[..., 1::2] << 4)
    return packed.contiguous(), s.to(torch.uint8).contiguous()


def make_mxfp4(bf16_dir, model_cls, ids, out):
    info = {"family": "gpt-oss", "dtype": "mxfp4"}
    manifest["cases"]["gpt-oss-mxfp4"] = info
    d = os.path.join(out, "gpt-oss-mxfp4")
    shutil.rmtree(d, ignore_errors=True)
    try:
        q = model_cls.from_pretrained(bf16_dir, quantization_config=transformers.Mxfp4Config(), device_map="cuda")
        q.save_pretrained(d)
        names = tensors_of(d)
        info["transformers_saved"] = any(k.endswith("_blocks") for k in names)
        if not info["transformers_saved"]:
            info["transformers_save_note"] = "save_pretrained wrote no *_blocks tensors"
    except Exception as e:  # noqa: BLE001 - recorded; the blocks are then made here
        info["transformers_saved"] = False
        info["transformers_save_note"] = f"{type(e).__name__}: {str(e)[:400]}"
    if not info["transformers_saved"]:
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        tensors = {}
        for f in sorted(glob.glob(os.path.join(bf16_dir, "*.safetensors"))):
            with safe_open(f, "pt") as s:
                for k in s.keys():
                    tensors[k] = s.get_tensor(k)
        for k in [k for k in tensors if k.endswith("experts.gate_up_proj") or k.endswith("experts.down_proj")]:
            w = tensors.pop(k).float().transpose(1, 2)  # [E, H, 2I] -> [E, 2I, H]; [E, I, H] -> [E, H, I]
            blocks, scales = quantize_mxfp4(w)
            tensors[k + "_blocks"], tensors[k + "_scales"] = blocks, scales
        save_file(tensors, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(bf16_dir, "config.json")) as f:
            cfg = json.load(f)
        cfg["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
            "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
    m = model_cls.from_pretrained(d, quantization_config=transformers.Mxfp4Config(dequantize=True), dtype=torch.float32,
                                  device_map="cpu", attn_implementation="eager").eval().float()
    seen = record_forward(m, ids)
    write_forward(os.path.join(d, "forward.json"), seen, ids, "gpt-oss-mxfp4: MoE blocks of GptOssForCausalLM, MXFP4 dequantized by transformers, float32")
    info["moe_layers"] = sorted(seen)
    info["tensors"] = tensors_of(d)
    with open(os.path.join(d, "config.json")) as f:
        info["config_keys"] = sorted(json.load(f))
    log("gpt-oss-mxfp4", json.dumps({k: info.get(k) for k in ("transformers_saved", "transformers_save_note", "moe_layers")}))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(4)
    for case in CASES:
        try:
            d, model_cls, ids = make_case(case, out)
            if case["family"] == "gpt-oss":
                try:
                    make_mxfp4(d, model_cls, ids, out)
                except Exception:  # noqa: BLE001
                    manifest["cases"].setdefault("gpt-oss-mxfp4", {})["error"] = traceback.format_exc()[-2000:]
                    log(traceback.format_exc())
        except Exception:  # noqa: BLE001 - one family failing must not stop the others
            manifest["cases"].setdefault(case["name"], {})["error"] = traceback.format_exc()[-2000:]
            log(traceback.format_exc())
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
