"""TFRecord tile records: the one schema (schema.py), dataset_info.json, the tf.data reader."""
