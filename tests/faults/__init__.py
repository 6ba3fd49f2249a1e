"""Fault and bad-input suite (issue #20): crashes, interruptions, hostile repositories, secrets, corrupt model
files and configs. The short form runs in the default suite; `-m faults_long` runs the long form."""
