"""convscope: see inside a convolutional network and explain its decisions."""
