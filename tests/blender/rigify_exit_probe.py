"""Run by test_extension.py in a child process: generate a Rigify rig, then end with a chosen outcome.

Not collected by default (its name does not start with test_); it checks that a test process that ran
Rigify still exits promptly with pytest's real status (bpy hangs or crashes at interpreter exit otherwise).
"""

import os

import addon_utils
import bpy


def test_generate_rigify_then_finish():
    addon_utils.enable("rigify", default_set=True)
    bpy.ops.object.armature_human_metarig_add()
    bpy.ops.pose.rigify_generate()
    generated = [o for o in bpy.data.objects if o.type == "ARMATURE" and "DEF-spine" in o.data.bones]
    assert generated, "Rigify generated no rig"
    assert os.environ.get("INSTANTHMR_PROBE_OUTCOME") == "pass", "deliberate failure requested by the parent test"
