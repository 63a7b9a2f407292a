"""Accelerator stacks (NVIDIA, ROCm, Ascend CANN) as data, planned per host and
verified after the install.

``plan`` turns ``files/stacks/<vendor>.yaml`` plus what the host is into a
concrete ``StackPlan``; ``verify`` reads back what the host has after the
install and says what is still wrong.  Pure logic: ``roles/stack.py`` applies
the plan with pyinfra, the tests plan and verify without a host.
"""
