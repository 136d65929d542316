"""KFP lightweight components: thin shells over the project's own modules.

Each file holds one component. Bodies import inside the function (KFP ships
only the function's source to the step), and every one runs in the project's
pipeline image, set here at compile time, with no per-step pip install.
"""

from __future__ import annotations

from kfp import dsl

from pipelines.settings import SETTINGS


def project_component(function):
    return dsl.component(function, base_image=SETTINGS.pipeline_image, install_kfp_package=False)
