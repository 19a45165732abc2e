#!/usr/bin/env python3
"""Rewrites fathom's CUDA kernel sources as C++ for the CPU emulation (include/emu_core.h):
each launch `kernel<<<grid, block, smem, stream>>>(args);` becomes
`emu::launch(emu::cfg(grid, block, smem, stream), [=]() { kernel(args); });` (the arguments
captured by value, so that a launch recorded in a graph can be replayed later), and the dynamic
shared memory declaration reads the emulated block's buffer. Other files are copied.

usage: transform.py KERNEL_DIR OUT_DIR
"""

import pathlib
import sys


def kernel_start(s, j):
    """Index where the kernel expression ending just before s[j] ('<<<') begins."""
    k = j
    if s[k - 1] == ">":  # template arguments
        depth = 0
        k -= 1
        while True:
            if s[k] == ">":
                depth += 1
            elif s[k] == "<":
                depth -= 1
                if depth == 0:
                    break
            k -= 1
    while k > 0 and (s[k - 1].isalnum() or s[k - 1] == "_"):
        k -= 1
    return k


def closing_paren(s, m):
    """Index of the parenthesis closing the one at s[m]."""
    depth = 0
    while True:
        if s[m] == "(":
            depth += 1
        elif s[m] == ")":
            depth -= 1
            if depth == 0:
                return m
        m += 1


def rewrite(s):
    s = s.replace("extern __shared__ float sm[];", "float *sm = (float *)emu::dynamic_smem();")
    out, i = [], 0
    while True:
        j = s.find("<<<", i)
        if j < 0:
            out.append(s[i:])
            return "".join(out)
        k = kernel_start(s, j)
        e = s.find(">>>", j)
        if s[e + 3] != "(":
            sys.exit(f"unexpected launch syntax: {s[k:e + 20]!r}")
        m = closing_paren(s, e + 3)
        out.append(s[i:k])
        out.append(f"emu::launch(emu::cfg({s[j + 3:e]}), [=]() {{ {s[k:j]}({s[e + 4:m]}); }})")
        i = m + 1


def main():
    src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    for f in sorted(src.iterdir()):
        text = f.read_text()
        if f.suffix == ".cu":
            (dst / (f.stem + ".cpp")).write_text(rewrite(text))
        elif f.is_file():
            (dst / f.name).write_text(text)


if __name__ == "__main__":
    main()
