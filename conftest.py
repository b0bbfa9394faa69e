# Makes the project root importable for the tests (models, layers, utils, …).


def pytest_report_header(config) -> str:
    """The arithmetic the suite runs with: the CPU, and torch's and oneDNN's instruction-set limits."""
    import os
    from pathlib import Path

    import torch

    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = "unknown CPU"
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA", "none")
    return f"cpu: {cpu}; torch kernels: {torch.backends.cpu.get_cpu_capability()}; oneDNN ISA limit: {limit}"
