"""A local emulator of the Constant Contact v3 contact-export API, with fault injection.

Tests, the demo and benchmarks run against this instead of the real service.  It
is deliberately independent of ``workers/`` and ``tasks/``: an emulator sharing
the client's code would share its mistakes.  Standard library only.

Entry points: ``python -m sandbox`` (CLI), :class:`sandbox.server.Sandbox`
(in-process), :class:`sandbox.testing.SandboxProcess` (subprocess for tests).
"""
