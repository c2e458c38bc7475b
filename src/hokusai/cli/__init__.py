"""The ``hokusai`` command line.

Importing it switches MLflow's usage telemetry off for this process and its children
(the gateway, its workers), before anything imports ``mlflow``.
"""

import os

from hokusai.server.mlflow_process import disable_telemetry

disable_telemetry(os.environ)
