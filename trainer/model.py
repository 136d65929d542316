"""The Keras network over transformed features: one-hot categories and buckets,
z-scored numbers, a small dense tower, one sigmoid output."""

from __future__ import annotations

import keras


def build_model(numeric_features: list[str], categorical_tokens: dict[str, int], hidden_units: list[int],
                learning_rate: float) -> keras.Model:
    inputs, encoded = {}, []
    for name in numeric_features:
        inputs[name] = keras.Input(shape=(1,), name=name, dtype="float32")
        encoded.append(inputs[name])
    for name, tokens in sorted(categorical_tokens.items()):
        inputs[name] = keras.Input(shape=(1,), name=name, dtype="int64")
        encoded.append(keras.layers.CategoryEncoding(num_tokens=tokens, output_mode="one_hot",
                                                     name=f"{name}_one_hot")(inputs[name]))
    tower = keras.layers.Concatenate(name="features")(encoded)
    for index, units in enumerate(hidden_units):
        tower = keras.layers.Dense(units, activation="relu", name=f"hidden_{index}")(tower)
    output = keras.layers.Dense(1, activation="sigmoid", name="probability")(tower)
    model = keras.Model(inputs=inputs, outputs=output)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss="binary_crossentropy",
                  metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")])
    return model
