# shellcheck shell=bash disable=SC2034
# Two fresh boots record their boot_id: the compare step must see them differ.
SCENARIO_DESC="selftest: the host compare step fails on differing records"
SCENARIO_BOOTS="one two"
boot_one() { record id /proc/sys/kernel/random/boot_id; }
boot_two() { record id /proc/sys/kernel/random/boot_id; }
compare() {
    check "both boots recorded an id" test -s "$RESULTS/one/id" -a -s "$RESULTS/two/id"
    check_same_file "ids are equal (must fail)" "$RESULTS/one/id" "$RESULTS/two/id"
}
