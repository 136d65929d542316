"""The floor every other package stands on: what the data and the model promise.

- `contract.paths`: where things are (project root, the landing prefix, defaults).
- `contract.dataset`: the data set description (`data/datasets/*.yaml`), typed.
- `contract.schema`: the reviewed tensorflow-metadata schema, read and written.
- `contract.model_inputs`: the exported model's input contract (`input_spec.json`):
  raw feature dtypes and missing-value sentinels, written by the trainer and
  read by evaluation, serving and batch prediction.
- `contract.artifacts`: the file names inside each pipeline artifact.

Nothing here imports TensorFlow, pandas or any other package of this project
except `storage`, so serving can ship it and anything can import it.
"""
