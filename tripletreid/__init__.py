"""The machinery of triplet-reid: what the scripts at the top of the clone call.

One module per concern. Nothing here parses a command line (the scripts do) or receives an
argparse namespace: functions take explicit parameters or the small dataclasses of
`experiment`. Importing the package imports nothing heavy; TensorFlow loads with the first
module that needs it.
"""
