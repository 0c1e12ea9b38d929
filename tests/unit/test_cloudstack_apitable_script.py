"""scripts/cloudstack-apitable.py reads a CloudStack checkout's command and response classes into the table
format of stackops_lab/cloudstack/apitable.json. Here on a made-up miniature of the api module's layout (a few
classes written for the test, in the shapes CloudStack's annotations take: ApiConstants names, literal names,
descriptions with parentheses and commas, inherited parameters, entity types, since, list collections)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
API = "api/src/main/java/org/apache/cloudstack/api"

FILES = {
    f"{API}/ApiConstants.java": """
public class ApiConstants {
    public static final String ID = "id";
    public static final String ZONE_ID = "zoneid";
    public static final String PAGE = "page";
    public static final String NAMES = "names";
    public static final String JOB_ID = "jobid";
}""",
    f"{API}/BaseCmd.java": """
public abstract class BaseCmd {
    @Parameter(name = "response", type = CommandType.STRING)
    private String responseType;
}""",
    f"{API}/BaseListCmd.java": """
public abstract class BaseListCmd extends BaseCmd {
    @Parameter(name = ApiConstants.PAGE, type = CommandType.INTEGER)
    private Integer page;
}""",
    f"{API}/BaseAsyncCmd.java": """
public abstract class BaseAsyncCmd extends BaseCmd {
    @Parameter(name = "starteventid", type = CommandType.LONG)
    private Long startEventId;
}""",
    f"{API}/command/admin/widget/ListWidgetsCmd.java": """
// a comment with @Parameter(name = "ignored") in it
@APICommand(name = "listWidgets", description = "Lists widgets (all of them, really)", responseObject = WidgetResponse.class)
public class ListWidgetsCmd extends BaseListCmd {
    @Parameter(name = ApiConstants.ZONE_ID, type = CommandType.UUID, entityType = ZoneResponse.class,
               description = "the zone (see \\"zones\\"), optional", since = "4.2")
    private Long zoneId;

    @Parameter(name = ApiConstants.NAMES, type = CommandType.LIST, collectionType = CommandType.UUID,
               entityType = {WidgetResponse.class, OtherResponse.class}, description = "ids, " + "comma separated")
    private List<Long> ids;
}""",
    f"{API}/command/admin/widget/SpinWidgetCmd.java": """
@APICommand(name = SpinWidgetCmd.APINAME, responseObject = WidgetResponse.class)
public class SpinWidgetCmd extends BaseAsyncCmd {
    public static final String APINAME = "spinWidget";
    @Parameter(name = ApiConstants.ID, type = CommandType.UUID, entityType = WidgetResponse.class, required = true)
    private Long id;
}""",
    f"{API}/response/BaseResponse.java": """
public abstract class BaseResponse {
    @SerializedName(ApiConstants.JOB_ID)
    private String jobId;
}""",
    f"{API}/response/WidgetResponse.java": """
public class WidgetResponse extends BaseResponse {
    @SerializedName(ApiConstants.ID) @Param(description = "the id")
    private String id;
    @SerializedName("spinning")
    private Boolean spinning;
}""",
}


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cloudstack_apitable", ROOT / "scripts" / "cloudstack-apitable.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def checkout(path: Path) -> str:
    for name, text in FILES.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    for args in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(["git", "-C", str(path), *args], check=True)
    return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_the_script_reads_commands_parameters_and_responses(tmp_path: Path) -> None:
    script = load_script()
    commit = checkout(tmp_path / "cs")
    out = tmp_path / "table.json"
    script.COMMANDS = ("listWidgets", "spinWidget")
    assert script.main([str(tmp_path / "cs"), "--out", str(out)]) == 0
    table = json.loads(out.read_text())
    widgets, spin = table["commands"]["listWidgets"], table["commands"]["spinWidget"]
    assert (widgets["async"], widgets["list"], widgets["response"], widgets["commit"]) == (
        False, True, "WidgetResponse", commit)
    assert widgets["params"] == {
        "names": {"type": "LIST", "required": False, "entity": "WidgetResponse", "collection": "UUID"},
        "page": {"type": "INTEGER", "required": False},
        "zoneid": {"type": "UUID", "required": False, "since": "4.2", "entity": "ZoneResponse"},
    }
    assert (spin["async"], spin["list"]) == (True, False)
    assert spin["params"] == {"id": {"type": "UUID", "required": True, "entity": "WidgetResponse"},
                              "starteventid": {"type": "LONG", "required": False}}
    assert table["responses"]["WidgetResponse"]["fields"] == ["id", "spinning"]
    assert table["responses"]["WidgetResponse"]["inherited"] == ["jobid"]
    assert script.main([str(tmp_path / "cs"), "--out", str(out), "--check"]) == 0


def test_the_committed_table_has_the_scripts_shape() -> None:
    """The committed table (compiled from the same classes read one at a time) keeps the script's format."""
    table = json.loads((ROOT / "lab" / "stackops_lab" / "cloudstack" / "apitable.json").read_text())
    assert set(table["commands"]) == set(load_script().COMMANDS)
    for entry in table["commands"].values():
        assert {"class", "path", "commit", "async", "list", "response", "params"} <= set(entry)
        for fact in entry["params"].values():
            assert set(fact) <= {"type", "required", "since", "entity", "collection"} and "type" in fact
