"""The agent's toolbox on the real pipeline: FLock (live API or the local simulator), the data layer, the
generation engine, the trainer, the evaluator and the publishers.

| module | concern |
|---|---|
| ``environment`` | where the task lives: FedLedger client, publisher, in-process simulator; ``PipelineError`` |
| ``task`` | task preparation and the train/dev/test splits, read back from the run folder |
| ``store`` | results keyed by content, dataset versions, adapter folders |
| ``run`` | ``PipelineRun``: what every stage works with (configuration, folder, environment, task, data, model) |
| ``base_model`` | which base model (chosen for a live task); the model cache: loaded once, adapters per use |
| ``evaluation`` | evaluation and its cache, the headline task metric, the test comparison |
| ``generation`` | the generate stage on tools.generation_setup |
| ``training`` | the training settings of one run (configuration + planner overrides) and the train stage |
| ``submission`` | publishing, submission, and the simulator's score of a submission |
| ``cards`` | the Hub artifacts: the adapter's model card stage by stage, the run's dataset with its card |
| ``toolbox`` | ``PipelineToolbox``: the stages behind agent.toolbox.Toolbox; ``open_pipeline`` |
"""

from agent.pipeline.base_model import resolve_base_model
from agent.pipeline.environment import SIM_FAULTS_ENV, PipelineError, TaskEnvironment, open_environment
from agent.pipeline.toolbox import PipelineToolbox, open_pipeline

__all__ = ["SIM_FAULTS_ENV", "PipelineError", "PipelineToolbox", "TaskEnvironment", "open_environment",
           "open_pipeline", "resolve_base_model"]
