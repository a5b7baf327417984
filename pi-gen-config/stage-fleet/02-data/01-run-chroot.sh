#!/bin/bash -e
systemctl enable fleet-grow-data.service
