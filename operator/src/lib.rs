//! Kordon operator: reconciles Site and Camera resources
