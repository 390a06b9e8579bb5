"""Lowering, bundling, verifying and writing device programs (``.pte`` + ``.bpte`` + manifest).

>>> clip = self_check_clip(enhancer)
>>> done = package(enhancer, int8_reference(enhancer), clip, "build/")     # the one export step
>>> write_manifest("build/", [done]); done.checks.passed
"""
from .package import Checks, Packaged, SelfCheckClip, check, package, seed_everything, self_check_clip, write_manifest
from .program import FORMAT, PRECISIONS, TOLERANCES, Program, export_program

__all__ = ["Checks", "FORMAT", "PRECISIONS", "Packaged", "Program", "SelfCheckClip", "TOLERANCES", "check",
           "export_program", "package", "seed_everything", "self_check_clip", "write_manifest"]
