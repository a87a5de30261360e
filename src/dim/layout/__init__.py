"""cluster.xml: schema, expressions, expansion of node sets, semantic checks and the model."""
