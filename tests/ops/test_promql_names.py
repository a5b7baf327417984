from tests.ops.promql_names import metric_names, variable_query_names


def test_selector_with_matchers_and_range():
    expr = 'rate(fleet_update_outcomes_total{outcome=~"rolled_back|failed", kind="os"}[30m])'
    assert metric_names(expr) == {"fleet_update_outcomes_total"}


def test_aggregation_grouping_and_binary_ops():
    expr = (
        "max by (rollout) (fleet_rollout_devices) / scalar(sum(max without (instance) "
        "(fleet_devices))) > 0.01 and on (rollout) fleet_rollout_info == 1"
    )
    assert metric_names(expr) == {"fleet_rollout_devices", "fleet_devices", "fleet_rollout_info"}


def test_numbers_durations_offsets_and_keywords_are_not_names():
    expr = "sum(up offset 5m) or vector(0) - 1e3 * 12 * 3600 + time() > bool 2h"
    assert metric_names(expr) == {"up"}


def test_grafana_variables_and_strings_are_ignored():
    expr = 'node_load1{device_id="$device", job=~"${job}"}[$__rate_interval]'
    assert metric_names(expr) == {"node_load1"}


def test_histogram_quantile_keeps_the_bucket_series():
    expr = "histogram_quantile(0.95, sum by (le, route) (rate(fleet_http_x_bucket[5m])))"
    assert metric_names(expr) == {"fleet_http_x_bucket"}


def test_an_undocumented_name_is_found():
    assert "fleet_made_up_total" in metric_names("sum(rate(fleet_made_up_total[5m]))")


def test_label_values_reads_only_the_selector():
    assert variable_query_names('label_values(up{job="fleet-devices"}, device_id)') == {"up"}
    assert variable_query_names("label_values(fleet_rollout_info, rollout)") == {
        "fleet_rollout_info"
    }
    assert variable_query_names("label_values(device_id)") == set()


def test_variable_query_may_be_plain_promql():
    assert variable_query_names("query_result(count by (role) (fleet_device_roles))") == {
        "fleet_device_roles"
    }
