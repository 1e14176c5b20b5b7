"""M3ToolEval against our ``/v1/agent``: tools, judges, an oracle and the harness.

Public entry points:

* ``tools.tools_for_task(task)``: the request's ``tools`` (name, signature, description and
  a self-contained ``source`` for the sandbox);
* ``scoring.score_reference`` / ``scoring.score_lenient``: upstream's judge bug for bug, and
  a forgiving one reported beside it;
* ``oracle.oracle_code(task)`` / ``oracle.self_check()``, and ``oracle_model.OracleResponder``
  for the scripted engine;
* ``python -m benchmarks.m3tooleval``: the benchmark itself (see ``__main__``).

The task data is read from the shared directory (``data.data_dir()``), never vendored.
"""
