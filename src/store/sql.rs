//! SQL shared by both engines (identical text); engine-specific statements live beside each engine.
