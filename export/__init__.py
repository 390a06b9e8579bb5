"""Lowering, bundling, verifying and writing device programs (``.pte`` + ``.bpte`` + manifest).

>>> clip = self_check_clip(enhancer)
>>> done = package(enhancer, int8_reference(enhancer), clip, "build/")     # the one export step
>>> write_manifest("build/", [done]); done.checks.passed
"""
from .package import Checks, Packaged, SelfCheckClip, check, package, seed_everything, self_check_clip, write_manifest
from .program import FORMAT, INT8_DELTA_TARGETS, PRECISIONS, TOLERANCES, Program, export_program

__all__ = ["FORMAT", "INT8_DELTA_TARGETS", "PRECISIONS", "TOLERANCES", "Checks", "Packaged", "Program", "SelfCheckClip",
           "check", "export_program", "package", "seed_everything", "self_check_clip", "write_manifest"]
