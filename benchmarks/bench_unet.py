"""Benchmark: unet3d throughput (voxels per second) and peak memory, forward and forward+backward.

    python benchmarks/bench_unet.py [--presets tiny small paper] [--sizes 32 48] [--threads 2]
                                    [--repeats 2] [--no-cpu] [--no-gpu]
    python benchmarks/bench_unet.py --cpu-inference | --allocator | --ceiling --presets small --sizes 32

CPU (``--threads`` torch threads, batch 1, fp32): each (preset, size, pass) runs in a fresh
process; the time is the best of ``repeats`` calls after one warm-up call, and the peak memory is
the process's peak RSS during the warm-up call minus its RSS just before it (torch's CPU
allocations are invisible to tracemalloc).

GPU (when torch.cuda.is_available()): at the largest size, batch ``--gpu-batch``, fp32 vs bf16
autocast, eager vs torch.compile (and its CUDA graphs, mode reduce-overhead), and
channels_last_3d; the peak memory is torch.cuda.max_memory_allocated; the operation rate from
torch.utils.flop_counter's count of one call, and for bf16 the model FLOP utilisation (MFU: that
rate over the GPU's dense bf16 tensor peak, PEAK_BF16_TFLOPS or ``--peak-tflops``; Chowdhery et
al. 2022, arXiv:2204.02311, appendix B). Then the largest batch that fits at that size, for
training (forward+backward, bf16, with and without gradient checkpointing) and for inference
(no_grad forward, bf16), found by doubling then bisecting on out-of-memory errors; at the
largest inference batch, bf16 compiled with CUDA graphs, the network-only wall time of the 8x
TNG300 box (528^3, tile 48, core 24: outpaint.plan.Plan's tiles) on one GPU at 2 and 5
evaluations per tile (the packaged student's and model's).

CPU inference (``--cpu-inference``): the options of generation on a CPU, side by side in one
process (rounds interleaved, so that other load on the machine hits every option alike), for one
preset and tile (default: the packaged model's, small at 32^3): eager fp32 one tile per call
(the reference point), more tiles per call, channels_last_3d, bf16 autocast (where the CPU has
native bf16: avx512_bf16 or AMX; its largest deviation from fp32 is printed), torch.compile
(inductor; its compile time is printed) and their combinations; then the same at 1 thread.
Voxels per second are the median over rounds; the ratio is to the reference point.

Allocator (``--allocator``): eager fp32 inference of ``--batch`` tiles per call with glibc's
default malloc against emulator.runtime.hold_freed_memory (what the ``emulator`` command sets),
each in its own fresh process (the setting is process-wide), the two alternating for
``--rounds`` rounds at each thread count; per call: median seconds, system CPU seconds and
minor page faults.

Ceiling (``--ceiling``): how far fp32 inference is from what this CPU can compute. The network's
floating-point operations per call (torch.utils.flop_counter: convolutions and matrix products,
2 per multiply-add) over its median seconds per call (``--batch`` tiles, with
hold_freed_memory), beside two kernels' rates at the same thread count: one convolution of the
network's costliest shape alone and a square sgemm (torch.mm, 2 n^3 operations), the rate a
CPU's fp32 arithmetic reaches in practice. A network already near the sgemm rate cannot get much
faster in fp32 without fewer operations.

Prints one JSON object per measurement.
"""
import argparse
import contextlib
import json
import multiprocessing
import resource
import time

import torch

import unet3d
from emulator.generate import native_bf16
from emulator.runtime import hold_freed_memory
from outpaint.plan import Plan

PEAK_BF16_TFLOPS = {"A100": 312.0, "H100": 989.4, "H200": 989.4, "L40S": 362.1, "L4": 121.0}
"""Dense bf16 tensor-core peaks [TFLOP/s] (NVIDIA's A100, H100/H200 SXM, L40S and L4 data
sheets; without sparsity), matched by substring of the device name."""


def step_fn(model, x, c, backward, autocast_dtype=None):
    """One forward (no_grad) or forward+backward pass of ``model`` on (x, c)."""
    def step():
        with torch.autocast(x.device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext():
            if backward:
                model(x, c).float().square().mean().backward()
            else:
                with torch.no_grad():
                    model(x, c)
    return step


def timed(step, repeats, sync=lambda: None):
    """(seconds of the first call, best seconds of ``repeats`` further calls)."""
    times = []
    for _ in range(repeats + 1):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return times[0], min(times[1:])


def inputs(model, n, batch, device):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, model.config.in_channels, n, n, n, generator=gen).to(device)
    return x, torch.zeros(batch, device=device)


def seeded(model):
    """Give the zero-initialised layers weights, so that the benchmark runs a generic network."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
    return model


def current_rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def cpu_case(preset, n, backward, threads, repeats):
    """One CPU measurement; run in a fresh process so that its peak RSS is its own."""
    torch.set_num_threads(threads)
    model = seeded(unet3d.build(preset)).train(backward)
    x, c = inputs(model, n, 1, "cpu")
    step = step_fn(model, x, c, backward)
    before = current_rss_bytes()
    start = time.perf_counter()
    step()
    cold = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    _, best = timed(step, repeats) if repeats else (None, cold)
    return {"device": "cpu", "preset": preset, "n": n, "batch": 1, "pass": "fwd+bwd" if backward else "fwd",
            "threads": threads, "params": sum(p.numel() for p in model.parameters()),
            "seconds": best, "cold_seconds": cold, "voxels_per_s": n ** 3 / best, "peak_rss_mib": peak / 2 ** 20}


def run_cpu(presets, sizes, threads, repeats):
    ctx = multiprocessing.get_context("spawn")
    for preset in presets:
        for n in sizes:
            for backward in (False, True):
                reps = 1 if preset == "paper" and n >= 48 else repeats
                with ctx.Pool(1) as pool:
                    print(json.dumps(pool.apply(cpu_case, (preset, n, backward, threads, reps))), flush=True)


def run_cpu_inference(preset, n, threads, rounds, base=None, compiled_options=True):
    """Inference options side by side in this process (module docstring); ratios to ``base``
    voxels per second (default: this run's first option). Returns the rate ratios refer to."""
    torch.set_num_threads(threads)
    options = [("eager fp32", 1, False, None, False), ("eager fp32", 4, False, None, False),
               ("channels_last_3d", 4, True, None, False), ("compiled", 4, False, None, True)]
    if native_bf16("cpu"):
        options += [("bf16 autocast", 4, False, torch.bfloat16, False),
                    ("compiled bf16", 4, False, torch.bfloat16, True)]
    options = [o for o in options if compiled_options or not o[4]]
    reference = seeded(unet3d.build(preset)).eval()
    cases = []
    for label, batch, channels_last, dtype, compiled in options:
        model = unet3d.build(preset, channels_last=channels_last).eval()
        model.load_state_dict(reference.state_dict())
        net = torch.compile(model) if compiled else model
        x, c = inputs(model, n, batch, "cpu")

        def step(net=net, x=x, c=c, dtype=dtype):
            with torch.inference_mode(), (torch.autocast("cpu", dtype=dtype) if dtype else contextlib.nullcontext()):
                return net(x, c).float()
        start = time.perf_counter()
        out = step()                                          # warm-up (and compilation)
        warm = time.perf_counter() - start
        with torch.inference_mode():
            exact = reference(x, c)
        deviation = float((out - exact).abs().max() / exact.abs().max())
        cases.append({"option": label, "batch": batch, "step": step, "warmup_s": warm,
                      "max_rel_deviation": deviation, "times": []})
    for _ in range(rounds):
        for case in cases:
            start = time.perf_counter()
            case["step"]()
            case["times"].append(time.perf_counter() - start)
    for case in cases:
        del case["step"]
        seconds = sorted(case.pop("times"))[rounds // 2]
        rate = case["batch"] * n ** 3 / seconds
        base = base or rate
        print(json.dumps({"device": "cpu", "preset": preset, "n": n, "threads": threads, **case,
                          "seconds_per_call": seconds, "voxels_per_s": rate, "ratio": rate / base}), flush=True)
    return base


def allocator_case(hold, preset, n, batch, threads, calls):
    """Median seconds, system seconds and minor faults per inference call after one warm-up call,
    in this (fresh) process, with or without hold_freed_memory."""
    held = hold_freed_memory() if hold else False
    torch.set_num_threads(threads)
    model = seeded(unet3d.build(preset)).eval()
    x, c = inputs(model, n, batch, "cpu")
    times, system, faults = [], 0.0, 0
    with torch.inference_mode():
        model(x, c)
        for _ in range(calls):
            usage, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            model(x, c)
            times.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_SELF)
            system += after.ru_stime - usage.ru_stime
            faults += after.ru_minflt - usage.ru_minflt
    return {"hold_freed_memory": held, "seconds_per_call": sorted(times)[calls // 2],
            "system_s_per_call": system / calls, "minor_faults_per_call": faults / calls}


def run_allocator(preset, n, batch, threads, rounds, calls=3):
    """allocator_case with and without the setting, alternating fresh processes (docstring)."""
    ctx = multiprocessing.get_context("spawn")
    for t in sorted({threads, 1}, reverse=True):
        results = {False: [], True: []}
        for _ in range(rounds):
            for hold in (False, True):
                with ctx.Pool(1) as pool:
                    results[hold].append(pool.apply(allocator_case, (hold, preset, n, batch, t, calls)))
        base = None
        for hold in (False, True):
            runs = results[hold]
            seconds = sorted(r["seconds_per_call"] for r in runs)[rounds // 2]
            base = base or seconds
            print(json.dumps({"device": "cpu", "preset": preset, "n": n, "batch": batch, "threads": t,
                              "hold_freed_memory": runs[0]["hold_freed_memory"], "seconds_per_call": seconds,
                              "voxels_per_s": batch * n ** 3 / seconds, "ratio": base / seconds,
                              "system_s_per_call": sum(r["system_s_per_call"] for r in runs) / rounds,
                              "minor_faults_per_call": sum(r["minor_faults_per_call"] for r in runs) / rounds}),
                  flush=True)


def median_seconds(call, rounds):
    """Median wall seconds of ``rounds`` calls of ``call`` after one warm-up call."""
    call()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return sorted(times)[rounds // 2]


def costliest_convolution(model, x, c):
    """(operations, conv3d module, its input) of the network's single costliest convolution."""
    from torch.utils.flop_counter import FlopCounterMode
    captured = []
    hooks = [m.register_forward_hook(lambda m, args, out: captured.append((m, args[0])))
             for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    with torch.inference_mode():
        model(x, c)
    for h in hooks:
        h.remove()
    best = (0, None, None)
    for module, inp in captured:
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            module(inp)
        best = max(best, (counter.get_total_flops(), module, inp), key=lambda b: b[0])
    return best


def run_ceiling(preset, n, batch, threads, rounds, gemm=2048):
    """The network's fp32 operation rate beside a convolution's and sgemm's (module docstring)."""
    from torch.utils.flop_counter import FlopCounterMode
    hold_freed_memory()
    model = seeded(unet3d.build(preset)).eval()
    x, c = inputs(model, n, batch, "cpu")
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x, c)
    network_ops = counter.get_total_flops()
    conv_ops, conv, conv_in = costliest_convolution(model, x, c)
    a, b = (torch.randn(gemm, gemm, generator=torch.Generator().manual_seed(s)) for s in (0, 1))
    for t in sorted({threads, 1}, reverse=True):
        torch.set_num_threads(t)
        with torch.inference_mode():
            rates = {"network": network_ops / median_seconds(lambda: model(x, c), rounds),
                     "costliest_conv3d": conv_ops / median_seconds(lambda: conv(conv_in), rounds),
                     "sgemm": 2 * gemm ** 3 / median_seconds(lambda: torch.mm(a, b), rounds)}
        print(json.dumps({"device": "cpu", "preset": preset, "n": n, "batch": batch, "threads": t,
                          "network_gflop_per_call": network_ops / 1e9,
                          "costliest_conv3d": f"{conv.in_channels}->{conv.out_channels} k{conv.kernel_size[0]} "
                                              f"on {tuple(conv_in.shape[2:])}",
                          **{f"{k}_gflop_per_s": v / 1e9 for k, v in rates.items()},
                          "network_over_sgemm": rates["network"] / rates["sgemm"]}), flush=True)


def peak_tflops(device_name, given=None):
    """The dense bf16 peak [TFLOP/s] of a GPU: ``given``, else PEAK_BF16_TFLOPS's entry whose
    name is in ``device_name`` (the longest match), else None."""
    if given:
        return given
    matches = [name for name in PEAK_BF16_TFLOPS if name in device_name]
    return PEAK_BF16_TFLOPS[max(matches, key=len)] if matches else None


def operations(step):
    """Floating-point operations of one call of ``step`` (torch.utils.flop_counter: convolutions
    and matrix products, 2 per multiply-add, backward included when the step has one)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def gpu_case(preset, n, batch, backward, dtype, compiled, channels_last, repeats, peak=None):
    """One GPU timing; ``compiled``: False, True (torch.compile) or "reduce-overhead" (its CUDA graphs)."""
    torch.cuda.empty_cache()
    model = seeded(unet3d.build(preset, channels_last=channels_last)).cuda().train(backward)
    x, c = inputs(model, n, batch, "cuda")
    ops = operations(step_fn(model, x, c, backward, dtype))
    net = model if not compiled else torch.compile(model, mode=None if compiled is True else compiled)
    step = step_fn(net, x, c, backward, dtype)
    torch.cuda.reset_peak_memory_stats()
    cold, best = timed(step, repeats, torch.cuda.synchronize)
    name, rate = torch.cuda.get_device_name(), ops / best / 1e12
    peak = peak_tflops(name, peak)
    return {"device": name, "preset": preset, "n": n, "batch": batch,
            "pass": "fwd+bwd" if backward else "fwd", "dtype": "bf16" if dtype else "fp32",
            "compiled": compiled, "channels_last": channels_last, "seconds": best, "cold_seconds": cold,
            "voxels_per_s": batch * n ** 3 / best, "peak_gib": torch.cuda.max_memory_allocated() / 2 ** 30,
            "tflop_per_call": ops / 1e12, "tflop_per_s": rate,
            "mfu": rate / peak if dtype == torch.bfloat16 and peak else None}


def large_box_estimate(tiles_per_s, n=528, tile=48, core=24, evaluations=(2, 5)):
    """Network-only hours to outpaint an n^3 box (outpaint.plan.Plan's tiles for tile and core)
    at ``tiles_per_s`` tile evaluations per second, for each number of evaluations per tile."""
    tiles = Plan(n, tile, core, 1).describe()["tiles"]
    return {"n": n, "tile": tile, "core": core, "tiles": tiles,
            **{f"hours_at_{e}_evaluations": tiles * e / tiles_per_s / 3600 for e in evaluations}}


def fits(preset, n, batch, backward, checkpointing):
    """Whether one bf16 pass at ``batch`` runs without a CUDA out-of-memory error."""
    torch.cuda.empty_cache()
    try:
        model = unet3d.build(preset, gradient_checkpointing=checkpointing).cuda().train(backward)
        x, c = inputs(model, n, batch, "cuda")
        step_fn(model, x, c, backward, torch.bfloat16)()
        torch.cuda.synchronize()
        return True
    except torch.cuda.OutOfMemoryError:
        return False


def largest_batch(preset, n, backward, checkpointing, limit=4096):
    """Largest batch that fits: double until out of memory, then bisect."""
    good, bad = 0, 1
    while bad <= limit and fits(preset, n, bad, backward, checkpointing):
        good, bad = bad, 2 * bad
    while bad - good > 1 and bad <= limit:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if fits(preset, n, mid, backward, checkpointing) else (good, mid)
    return good


def run_gpu(presets, n, batch, repeats, peak=None):
    for preset in presets:
        for backward in (False, True):
            for dtype, compiled, channels_last in ((None, False, False), (torch.bfloat16, False, False),
                                                   (torch.bfloat16, False, True), (None, True, False),
                                                   (torch.bfloat16, True, False), (torch.bfloat16, True, True),
                                                   (torch.bfloat16, "reduce-overhead", False)):
                print(json.dumps(gpu_case(preset, n, batch, backward, dtype, compiled, channels_last, repeats,
                                          peak)), flush=True)
    for preset in presets:
        largest = {}
        for backward, checkpointing in ((True, False), (True, True), (False, False)):
            largest[backward, checkpointing] = largest_batch(preset, n, backward, checkpointing)
            print(json.dumps({"device": torch.cuda.get_device_name(), "preset": preset, "n": n, "dtype": "bf16",
                              "pass": "fwd+bwd" if backward else "fwd", "checkpointing": checkpointing,
                              "largest_batch": largest[backward, checkpointing]}), flush=True)
        inference_batch = largest[False, False]
        if inference_batch:
            case = gpu_case(preset, n, inference_batch, False, torch.bfloat16, "reduce-overhead", False, repeats, peak)
            print(json.dumps({**case, "box_estimate": large_box_estimate(inference_batch / case["seconds"])}),
                  flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=None,
                        help="U-Net presets to run (default: tiny small paper; --cpu-inference, "
                             "--allocator and --ceiling: small, the packaged model's).")
    parser.add_argument("--sizes", nargs="+", type=int, default=[32, 48], help="Cube side lengths in voxels.")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads.")
    parser.add_argument("--repeats", type=int, default=2, help="Timed calls after the warm-up (paper at 48^3 on CPU: 1).")
    parser.add_argument("--gpu-batch", type=int, default=8, help="Batch size of the GPU timings.")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="The GPU's dense bf16 peak [TFLOP/s] for the MFU (default: PEAK_BF16_TFLOPS by name).")
    parser.add_argument("--no-cpu", action="store_true", help="Skip the CPU measurements.")
    parser.add_argument("--no-gpu", action="store_true", help="Skip the GPU measurements.")
    parser.add_argument("--cpu-inference", action="store_true",
                        help="Only the side-by-side CPU inference options (module docstring), for "
                             "the first preset and size, at --threads and at 1 thread.")
    parser.add_argument("--rounds", type=int, default=7, help="Timed rounds of --cpu-inference and --allocator.")
    parser.add_argument("--allocator", action="store_true",
                        help="Only glibc's default malloc against emulator.runtime.hold_freed_memory "
                             "(module docstring), for the first preset and size, at --threads and 1.")
    parser.add_argument("--ceiling", action="store_true",
                        help="Only the network's fp32 operation rate beside a convolution's and sgemm's "
                             "(module docstring), for the first preset and size, at --threads and 1.")
    parser.add_argument("--batch", type=int, default=4, help="Tiles per call of --allocator and --ceiling.")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="Leave torch.compile out of --cpu-inference (its compilation takes minutes).")
    args = parser.parse_args()
    presets = args.presets or ["tiny", "small", "paper"]
    single = args.presets[0] if args.presets else "small"
    if args.allocator:
        run_allocator(single, args.sizes[0], args.batch, args.threads, args.rounds)
        return
    if args.ceiling:
        run_ceiling(single, args.sizes[0], args.batch, args.threads, args.rounds)
        return
    if args.cpu_inference:
        base = None
        for threads in sorted({args.threads, 1}, reverse=True):
            base = run_cpu_inference(single, args.sizes[0], threads, args.rounds, base, args.compile)
        return
    if not args.no_cpu:
        run_cpu(presets, args.sizes, args.threads, args.repeats)
    if not args.no_gpu and torch.cuda.is_available():
        run_gpu(presets, max(args.sizes), args.gpu_batch, max(args.repeats, 5), args.peak_tflops)


if __name__ == "__main__":
    main()
