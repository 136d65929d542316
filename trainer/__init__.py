"""The model: its raw-input contract, the tf.Transform preprocessing, the Keras
network, training and export. Platform-neutral: the pipeline's transform and
train components call it, locally and as Vertex custom jobs alike."""
