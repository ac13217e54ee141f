"""Video-to-speech research pipeline: importable library behind the DVC stages."""
import os

# numba (librosa's pYIN, resemblyzer's features) JIT-compiles for the host CPU by default; on some
# virtual machines (seen: "AMD EPYC" with numba 0.68 / llvmlite 0.50) the detected host target
# segfaults inside librosa.pyin. The generic x86-64 target runs everywhere. Set before numba is
# first imported; an explicit NUMBA_CPU_NAME in the environment still wins.
os.environ.setdefault("NUMBA_CPU_NAME", "generic")

__version__ = "0.1.0"
